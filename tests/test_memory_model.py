"""Will it fit (bench.analysis.memory_model, `bench fit`): known terms recovered from synthetic points,
prediction intervals that cover, clear errors for too little data, and the command on a run."""

from __future__ import annotations

import numpy as np
import pytest

from bench.analysis.memory_model import Point, fit, gpu_memory, held_out, parse_memory, points_of
from bench.commands.cli import main
from bench.errors import BenchError
from bench.records.results import read_results

from conftest import make_record, write_run

# the truth the synthetic points are drawn from: 11.7 GB fixed, 12 bytes per trainable parameter
# (0.012 GB per million), 0.45 GB per thousand tokens of a micro-batch; 23 M parameters per rank
FIXED, PER_PARAM, PER_TOKEN, PER_RANK = 11.7, 0.012, 0.45, 23.0
GRID = [(r, b, s) for r in (8, 16, 32, 64) for b in (1, 2, 4) for s in (512, 1024, 2048)]


def synthetic(rng: np.random.Generator, configs, noise_gb: float = 0.05) -> list[Point]:
    return [Point(r, b, b * s, r * PER_RANK, FIXED + PER_PARAM * r * PER_RANK + PER_TOKEN * b * s / 1000
                  + rng.normal(0, noise_gb), f"r={r} b={b} s={s}") for r, b, s in configs]


def test_the_terms_are_recovered_and_explain_the_fit():
    model = fit(synthetic(np.random.default_rng(1), GRID[::2]))
    fixed, per_param, per_token = model.coefficients
    assert fixed == pytest.approx(FIXED, abs=0.1) and per_param == pytest.approx(PER_PARAM, rel=0.05)
    assert per_token == pytest.approx(PER_TOKEN, rel=0.05) and model.params_per_rank_m == pytest.approx(PER_RANK)
    prediction = model.predict(16, 2, 1024)
    assert sum(prediction.terms.values()) == pytest.approx(prediction.peak_gb)
    assert "bytes a parameter" in model.describe()[1]


def test_prediction_intervals_cover_held_out_points_about_as_often_as_they_say():
    rng = np.random.default_rng(2)
    covered = trials = 0
    for _ in range(200):
        model = fit(synthetic(rng, GRID[::3]))
        [point] = synthetic(rng, [GRID[rng.integers(len(GRID))]])
        p = model.predict(point.lora_r, point.batch_size, point.tokens // point.batch_size)
        covered += p.low <= point.peak_gb <= p.high
        trials += 1
    assert 0.90 <= covered / trials <= 0.99


def test_a_verdict_says_what_fits_with_what_to_spare():
    model = fit(synthetic(np.random.default_rng(3), GRID[::2]))
    assert model.predict(8, 2, 1024).verdict(24).startswith("fits with")
    assert model.predict(64, 4, 2048).verdict(16).startswith("does not fit: needs")
    assert model.largest_batch(8, 1024, 24) > model.largest_batch(8, 2048, 24) >= 1
    assert model.largest_batch(64, 2048, 16) == 0


def test_too_few_points_or_one_rank_is_a_clear_error():
    rng = np.random.default_rng(4)
    with pytest.raises(BenchError, match="3 training points: the model has 3 terms and needs 4 or more"):
        fit(synthetic(rng, GRID[:3]))
    with pytest.raises(BenchError, match="two or more ranks"):
        fit(synthetic(rng, [(8, b, s) for b in (1, 2) for s in (512, 1024)]))
    with pytest.raises(BenchError, match="leaves 2 points to fit"):
        held_out(synthetic(rng, GRID[:5]), 3)


def test_memory_is_given_in_gb_or_by_the_gpus_name():
    assert parse_memory("24GB") == 24 and parse_memory("80") == 80
    assert gpu_memory("NVIDIA GeForce RTX 4090") == 24 and gpu_memory("A100 80GB PCIe") == 80
    # nvidia-smi's names: the size a name states wins over its family's; a superchip's states its CPU's too
    assert gpu_memory("NVIDIA A100-SXM4-80GB") == 80 and gpu_memory("NVIDIA A100-PCIE-40GB") == 40
    assert gpu_memory("NVIDIA H100 NVL") == 94 and gpu_memory("NVIDIA GH200 480GB") == 96
    with pytest.raises(BenchError, match="give it in GB"):
        parse_memory("lots")
    with pytest.raises(BenchError, match="no memory size known"):
        gpu_memory("Voodoo 2")


def training_run(root, run_id: str, points: list[Point]):
    records = []
    for p in points:
        params = {"lora_r": p.lora_r, "batch_size": p.batch_size, "grad_accum": 1, "seq_len": int(p.tokens // p.batch_size)}
        records += [make_record("peak_vram_gb", p.peak_gb, run_id=run_id, suite="train", **params),
                    make_record("trainable_params_m", p.trainable_m, run_id=run_id, **params),
                    make_record("s_per_step", 2.0, samples=[2.0, 2.0], run_id=run_id, **params),
                    make_record("train_tokens_per_s", p.tokens / 2.0, samples=[p.tokens / 2.0] * 2, run_id=run_id,
                                **params)]
    return write_run(root, run_id, records)


def test_the_runs_training_cases_are_the_points(tmp_path):
    points = synthetic(np.random.default_rng(5), GRID[:6])
    found = points_of(read_results(training_run(tmp_path, "fit", points)))
    assert [(p.lora_r, p.batch_size, p.tokens) for p in found] == [(p.lora_r, p.batch_size, p.tokens) for p in points]


def test_bench_fit_answers_in_one_line_and_refuses_a_run_with_too_few_points(tmp_path, capsys):
    run = training_run(tmp_path, "fit", synthetic(np.random.default_rng(6), GRID[::2]))
    assert main(["fit", str(run), "--rank", "8", "--batch", "2", "--seq", "1024", "--gpu", "RTX 3090"]) == 0
    [line] = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("r=8, batch 2, 1024 tokens: ") and "fits with" in line and "GB to spare" in line
    assert main(["fit", str(run), "--table", "--hold-out", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("held out ") == 3 and "largest batch" in out and "80 GB" in out
    from bench.report import render_run

    html, _ = render_run(run)
    page = html.read_text()
    assert 'id="will-it-fit"' in page and page.count("<tr><td>r=") == len(GRID[::2]) and "in sample" not in page
    few = training_run(tmp_path, "few", synthetic(np.random.default_rng(7), GRID[:2]))
    assert main(["fit", str(few)]) == 2
    assert "needs 4 or more (run the fit profile" in capsys.readouterr().err


def test_the_fit_profile_on_the_cpu_gives_points_bench_fit_takes(tmp_path, capsys):
    """The tiny model's training cases at five of the fit profile's points, resident memory as the
    peak: the command works on any machine (the numbers are the CPU's, not a GPU's)."""
    from test_plugin import run_pytest

    chosen = ["r8-b1x1-s512", "r8-b4x1-s2048", "r16-b4x1-s512", "r32-b1x1-s2048", "r64-b2x1-s1024"]
    result = run_pytest("suites/test_train.py", "-q", "--gpu", "cpu", "--profile", "fit", "-k",
                        " or ".join(f"test_train[{c}]" for c in chosen), "--report-dir", str(tmp_path), "--run-id", "fit")
    assert result.returncode in (0, 1), result.stdout[-3000:]  # 1: a baseline check the fit profile does not aim at
    points = points_of(read_results(tmp_path / "fit"))
    assert sorted((p.lora_r, p.batch_size) for p in points) == [(8, 1), (8, 4), (16, 4), (32, 1), (64, 2)]
    assert all(p.trainable_m > 0 and p.tokens > 0 and p.peak_gb > 0 for p in points)
    assert main(["fit", str(tmp_path / "fit")]) == 0
    assert "GB per thousand tokens" in capsys.readouterr().out
