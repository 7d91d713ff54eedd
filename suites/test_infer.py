"""Batched generation across batch sizes and reasoning efforts: time to first token, decode
tokens/s (total and per sequence), inter-token latency, channels; the warm-up generate is not
counted."""

import statistics
import time

import numpy as np
import pytest

from bench.data import inference_prompts
from bench.fidelity.plain import Script, own_cpu_s, process_context
from bench.analysis.channels import channel_token_counts
from bench.telemetry import Timer
from bench.telemetry.rounds import RoundThread, run_rounds
from bench.telemetry.energy import EnergyCounter
from bench.telemetry.memory import CollectorTime
from bench.telemetry.tokens import GenerationTiming, TokenClock

pytestmark = pytest.mark.suite("infer")

WARMUP_NEW_TOKENS = 8
# The profiled round decodes at most this many tokens: per-token figures need no more (each token
# is one forward pass with the same kernels), and the profiler's cost grows with the kernels it
# records (380 a token on the tiny model, 2,000 on the 20B): 16 tokens cost 0.6-0.8 s a case on an
# H100 for the tiny model, 5.9 s of the README command's 93.
PROFILED_NEW_TOKENS = 8


@pytest.fixture(scope="module")
def served(bench, backend, prepared, train_data):
    """The model loaded once for the whole module, switched to inference and warmed up once."""
    loaded = backend.load(bench.source)
    backend.for_inference(loaded)
    rows = train_data.rows
    prompts = inference_prompts(rows, loaded.tokenizer, 1, "medium")
    timer = Timer(bench.device)
    with timer:
        backend.generate(loaded, prompts, WARMUP_NEW_TOKENS)
    bench.note_timing("first_generate_s", timer.elapsed)
    yield loaded, rows, timer.elapsed
    backend.unload(loaded)


def test_generate(bench, backend, served, case, benchmark, batch_size, effort):
    loaded, rows, first_generate_s = served
    budget = bench.profile.effort_tokens[effort]
    prompts = inference_prompts(rows, loaded.tokenizer, batch_size, effort)
    clock = TokenClock(bench.device)
    rounds: list[tuple[GenerationTiming, float | None]] = []
    outputs: list[list[list[int]]] = []
    collected: list[CollectorTime] = []
    cpu_share: list[float] = []  # the process's CPU seconds over each round's wall seconds

    def generate():
        joules, cpu = energy.joules(), own_cpu_s()
        with CollectorTime() as gc_time:
            clock.start()
            outputs.append(backend.generate(loaded, prompts, budget, [clock]))
        cpu_share.append((own_cpu_s() - cpu) / (time.perf_counter() - clock.started))
        collected.append(gc_time)
        spent = energy.joules()
        rounds.append((GenerationTiming.from_clock(clock, batch_size),
                       None if joules is None else spent - joules))

    control: dict[str, list[float]] = {"ttft_s": [], "decode_tok_s": []}
    plain_round = None
    if bench.options.plain_control:
        import torch

        script = Script({"device": bench.device}, torch)

        def plain_round():
            """A user's script's timing of the same generation, in this process, before each round:
            held against the case's figures, it splits a gap to the plain script into this code path
            and this process (--plain-control). Outside the case's timed region."""
            ttft, decode, _ = script.plain_round(loaded.model, loaded.tokenizer, prompts, budget)
            control["ttft_s"].append(ttft)
            control["decode_tok_s"].append(decode)

    benchmark.group = f"infer-{effort}"
    context = process_context(bench.device)  # what the cross-check holds against its plain script's
    profiled_tokens = min(budget, PROFILED_NEW_TOKENS)
    with RoundThread(bench.device) as on_round_thread:
        with EnergyCounter(bench.device) as energy:
            on_round_thread(lambda: run_rounds(
                benchmark, generate, rounds=bench.profile.infer_rounds, warmup_rounds=1, setup=plain_round,
                until=bench.workload.precision(lambda: [t.decode_tok_s for t, _ in rounds[1:]])))
        case.add_phase("warm-up round", rounds[0][0].total_s)
        with case.phase("profiled round"):
            why = on_round_thread(lambda: bench.workload.profiled(
                lambda: backend.generate(loaded, prompts, profiled_tokens)))
    timed = rounds[1:]  # round 0 is the warm-up round
    timings = [t for t, _ in timed]
    case.add_timed_work(sum(t.total_s for t in timings))
    itl = [ms for t in timings for ms in t.itl_ms]
    last = outputs[-1]
    channels = [channel_token_counts(ids, loaded.tokenizer) for ids in last]
    sample = loaded.tokenizer.decode(last[0], skip_special_tokens=False)
    case.timed("ttft_s", [t.ttft_s for t in timings])
    case.timed("decode_tok_s", [t.decode_tok_s for t in timings],
               extra={"channels": channels, "sample": sample[:400],
                      "prompt_tokens": len(loaded.tokenizer(prompts[0])["input_ids"]),
                      "gc_s": [c.seconds for c in collected[1:]], "context": context,
                      "cpu_share": cpu_share[1:]})
    case.timed("decode_tok_s_per_seq", [t.decode_tok_s_per_seq for t in timings])
    for metric, values in control.items():  # the rounds beside the timed ones (the first went with the warm-up)
        if values:
            case.timed(f"plain_{metric}", values[-len(timed):])
    case("itl_p50_ms", float(np.percentile(itl, 50)), samples=[statistics.median(t.itl_ms) for t in timings])
    case("itl_p99_ms", float(np.percentile(itl, 99)), samples=[float(np.percentile(t.itl_ms, 99)) for t in timings])
    case("new_tokens", budget)
    case.profiled(why, per=profiled_tokens, unit="token")
    if (batch_size, effort) == bench.profile.generations[0]:
        case("first_generate_s", first_generate_s)
    per_token = [j / (t.batch_size * t.new_tokens) for t, j in timed if j is not None]
    if per_token:
        case.timed("energy_j_per_token", per_token)
    benchmark.extra_info.update({"decode_tok_s": [t.decode_tok_s for t in timings], "new_tokens": budget})
