"""Will it serve (bench.analysis.inference_memory, `bench fit --infer`): the KV cache computed from
the config, the rest recovered from synthetic generation peaks, clear errors, the command on a run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.analysis.inference_memory import InferPoint, fit_inference, infer_points_of
from bench.analysis.roofline import Shape
from bench.commands.cli import main
from bench.errors import BenchError
from bench.records.results import read_results

from conftest import make_record, write_run

# gpt-oss-20b's attention: 24 layers, half of them a 128-token sliding window, 8 KV heads of 64
SHAPE = Shape(layers=24, hidden=2880, heads=64, kv_heads=8, head_dim=64, experts=32, active_experts=4,
              expert_dim=2880, vocab=201088, sliding_window=128, sliding_layers=12)
FIXED, PER_TOKEN = 13.6, 0.08  # GB; GB per thousand tokens held by the batch
GRID = [(b, c) for b in (1, 2, 4, 8) for c in (104, 512, 2048)]


def kv_gb(batch: int, context: int) -> float:
    per_token_layer = 2 * 8 * 64 * 2  # keys and values, bf16
    return batch * per_token_layer * (12 * context + 12 * min(context, 128)) / 1e9


def synthetic(rng: np.random.Generator, configs, noise_gb: float = 0.002) -> list[InferPoint]:
    return [InferPoint(b, c, FIXED + kv_gb(b, c) + PER_TOKEN * b * c / 1000 + rng.normal(0, noise_gb), f"b={b} c={c}")
            for b, c in configs]


def test_the_kv_cache_comes_from_the_config_and_the_rest_is_recovered():
    model = fit_inference(synthetic(np.random.default_rng(1), GRID), SHAPE)
    fixed, per_token = model.coefficients
    assert fixed == pytest.approx(FIXED, abs=0.01) and per_token == pytest.approx(PER_TOKEN, rel=0.05)
    p = model.predict(32, 8192)
    assert p.terms["KV cache (from the config)"] == pytest.approx(kv_gb(32, 8192))  # 6.5 GB, none of it fitted
    assert sum(p.terms.values()) == pytest.approx(p.peak_gb) and p.low < p.peak_gb < p.high
    assert "12 of them holding at most 128 tokens" in model.describe()[1]


def test_prediction_intervals_cover_held_out_points_about_as_often_as_they_say():
    rng = np.random.default_rng(2)
    covered = trials = 0
    for _ in range(200):
        model = fit_inference(synthetic(rng, GRID[::2], 0.01), SHAPE)
        for point in synthetic(rng, GRID[1::2], 0.01):
            p = model.predict(point.batch_size, point.context)
            covered += p.low <= point.peak_gb <= p.high
            trials += 1
    assert 0.90 <= covered / trials <= 0.99


def test_too_few_points_or_one_size_is_a_clear_error():
    with pytest.raises(BenchError, match="needs 3 or more and two sizes"):
        fit_inference(synthetic(np.random.default_rng(3), GRID[:2]), SHAPE)
    with pytest.raises(BenchError, match="needs 3 or more and two sizes"):
        fit_inference(synthetic(np.random.default_rng(3), [(1, 104)] * 4), SHAPE)


def infer_run(tmp_path, run_id: str, points: list[InferPoint], model: str = "tiny-gpt-oss"):
    records = []
    for p in points:
        case = dict(batch_size=p.batch_size, effort=f"c{p.context}")  # one case per batch and context
        new = 32
        records += [make_record("peak_vram_gb", p.peak_gb, suite="infer", run_id=run_id, **case),
                    make_record("decode_tok_s", 50.0, suite="infer", run_id=run_id, **case,
                                extra={"prompt_tokens": p.context - new, "channels": [{"none": new}] * p.batch_size})]
    return write_run(tmp_path, run_id, [dataclasses.replace(r, model=model) for r in records], model=model)


def test_the_runs_generation_cases_are_the_points(tmp_path):
    configs = [(1, 104), (2, 104), (4, 104), (8, 104)]
    run = infer_run(tmp_path, "serve", synthetic(np.random.default_rng(4), configs))
    points = infer_points_of(read_results(run))
    assert sorted((p.batch_size, p.context) for p in points) == configs


def test_bench_fit_infer_answers_in_one_line_and_says_what_it_extrapolates(tmp_path, capsys):
    # a replica's config ships with the package: the KV term needs no download
    configs = [(b, 104 + 32 * e) for b in (1, 2, 4, 8) for e in (0, 1)]
    run = infer_run(tmp_path, "serve", synthetic(np.random.default_rng(5), configs), model="replica:gpt-oss-20b")
    assert main(["fit", str(run), "--infer", "--batch", "8", "--context", "4096", "--gpu-memory", "80GB"]) == 0
    [line] = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("batch 8, 4096 tokens of context: ") and "fits with" in line
    assert "extrapolated along a line beyond the measured 136 tokens" in line
    assert main(["fit", str(run), "--infer", "--batch", "64", "--context", "65536", "--gpu", "RTX 4090"]) == 1
    assert "does not fit: needs" in capsys.readouterr().out
    assert main(["fit", str(run), "--infer", "--table", "--hold-out", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("held out ") == 2 and "by context" in out and "65536" in out
    from bench.report import render_run

    html, _ = render_run(run)
    page = html.read_text()
    assert 'id="will-it-serve"' in page and "Measured up to 136 tokens of context" in page and "256+" in page
    assert main(["fit", str(run), "--infer", "--rank", "8"]) == 2
    assert "the inference model takes --batch and --context" in capsys.readouterr().err
    assert main(["fit", str(run), "--context", "4096"]) == 2
    assert "add --infer" in capsys.readouterr().err


def test_a_run_without_generation_cases_is_refused_with_what_to_run(tmp_path, capsys):
    run = write_run(tmp_path, "train-only", [make_record("s_per_step", 1.0, suite="train", lora_r=8)])
    assert main(["fit", str(run), "--infer"]) == 2
    assert "run pytest suites/test_infer.py" in capsys.readouterr().err


def test_two_engines_are_not_fitted_as_one(tmp_path, capsys):
    points = synthetic(np.random.default_rng(6), [(1, 104), (2, 104), (4, 104)])
    run = infer_run(tmp_path, "two", points, model="replica:gpt-oss-20b")
    records = read_results(run)
    write_run(tmp_path, "both", records + [dataclasses.replace(r, backend="unsloth") for r in records],
              model="replica:gpt-oss-20b")
    assert main(["fit", str(tmp_path / "both"), "--infer"]) == 2
    assert "one model on one engine; these runs have 2" in capsys.readouterr().err
