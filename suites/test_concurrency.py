"""Training and serving at the same time, as the seed ran them on two GPUs: each side's throughput
alone and together, so the interference between them is a number.

`split` trains on the first GPU of --gpu and serves on the second; `shared` puts both on the first
(the stress case; on the CPU, both on the CPU with the cores split between them)."""

import contextlib
import dataclasses
import os

import pytest

from bench.harness.concurrency import MAX_TOGETHER_STEPS, Pair, Side, split_unavailable
from bench.analysis.stats import welch_log

pytestmark = pytest.mark.suite("concurrency")

SERVE_EFFORT = "medium"


def _devices(bench, placement):
    gpus = list(bench.run_gpus or [])
    if placement == "split":
        why = split_unavailable(gpus)
        if why:
            pytest.skip(why)
        return gpus[0], gpus[1]
    return (gpus[0], gpus[0]) if gpus else (None, None)


@pytest.fixture(autouse=True)
def _telemetry_of_the_device(bench, case):
    """The work runs in the two sides' processes: the case's figures are the GPU's (NVML) and never
    this process's allocator, which would start CUDA in a process that has no use for it."""
    case.watch(None, bench.gpu.uuid if bench.gpu else None)


def test_concurrency(bench, backend, prepared, case, tmp_path, placement):
    if bench.options.worker_id and bench.collected_suites - {"concurrency"}:
        pytest.skip("with several workers the concurrency suite needs the GPUs to itself: "
                    "run `pytest suites/test_concurrency.py --gpu ...` on its own")
    train_gpu, serve_gpu = _devices(bench, placement)
    profile = bench.profile
    lora_r, (batch_size, grad_accum) = profile.trainings[0]
    serve_batch = max(b for b in profile.infer_batches if b <= 8)
    solo_steps, solo_rounds = profile.timing_steps, profile.infer_rounds + 1
    threads = max(1, (os.cpu_count() or 2) // 2) if train_gpu is None else None
    train = Side(role="train", gpu=train_gpu, model=bench.source.spec, backend=bench.backend_name,
                 backend_options=bench.workload.backend_options, dataset=bench.options.dataset, fixed_length=bench.workload.fixed_length,
                 lora_r=lora_r,
                 train=bench.workload.train_settings(batch_size, grad_accum, 1 + solo_steps + MAX_TOGETHER_STEPS + 2,
                                            tmp_path / "out"),
                 batch_size=serve_batch, effort=SERVE_EFFORT, new_tokens=profile.effort_tokens[SERVE_EFFORT],
                 threads=threads)
    serve = dataclasses.replace(train, role="serve", gpu=serve_gpu)
    case.params.update(lora_r=train.lora_r, batch_size=batch_size, grad_accum=grad_accum, serve_batch=serve_batch,
                       effort=SERVE_EFFORT)
    with case.phase("engine import"):
        processes = bench.ready_processes()
    with contextlib.ExitStack() as stack:
        with case.phase("set-up of the two sides"):  # each side loads, builds its trainer and warms up: nothing timed
            pair = stack.enter_context(Pair(train, serve, processes))
        result = pair.measure(solo_steps, solo_rounds)
    if len(result.serve_together) < 2:
        pytest.fail(f"only {len(result.serve_together)} serving rounds fell inside the training window; "
                    "the interference cannot be measured", pytrace=False)
    together = result.train_together
    case.add_timed_work(sum(u.end - u.start for u in result.train_solo + result.serve_solo)
                        + (together[-1].end - together[0].start if together else 0.0))
    where = {"train_gpu": train_gpu, "serve_gpu": serve_gpu}
    for name, units in (("train_tok_s_alone", result.train_solo), ("train_tok_s_together", result.train_together),
                        ("serve_tok_s_alone", result.serve_solo), ("serve_tok_s_together", result.serve_together)):
        case.timed(name, [u.tok_s for u in units], extra=where)
    for name, alone, together in (("train_retained", result.train_solo, result.train_together),
                                  ("serve_retained", result.serve_solo, result.serve_together)):
        estimate = welch_log([u.tok_s for u in alone], [u.tok_s for u in together])
        low, high = estimate.interval(0.025)
        case(name, estimate.ratio, extra={"low": low, "high": high, "method": f"95% interval, {estimate.method}",
                                          **where})
