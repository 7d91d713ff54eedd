"""Every metric the suites emit, with every rule about it: unit, which direction is better, the
suites that measure it, whether a comparison gates on it, the tolerance of a single reading,
whether it is charted and frozen into baselines.

This table is the one home of per-metric rules: baseline files, comparisons, resuming, freezing and
the report's charts read it, so a typo in a metric name is an error before anything runs and a
rule is changed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SUITES = ("load", "train", "infer", "adapter", "concurrency", "serve")


@dataclass(frozen=True)
class Metric:
    unit: str
    better: str  # "lower" | "higher"
    suites: tuple[str, ...]
    doc: str
    # A gating metric can fail a comparison (exit 1); the others are diagnostics, reported and
    # never failing unless a baseline's [gates] opts them in. `gate_where` narrows gating to some
    # cases (the warm load: the cold one is a one-off cost).
    gates: bool = False
    gate_where: dict = field(default_factory=dict)
    # A value measured once (no samples) has no interval: a change beyond this relative tolerance
    # counts. None: such a reading is shown, never judged.
    tolerance: float | None = None
    compared: bool = True  # False: describes the configuration (equal by construction)
    charted: bool = False  # drawn on comparison, engine/GPU and history pages
    frozen: bool = False  # written as a check by `bench baseline save`
    closes_case: bool = False  # written when a case ends (also when it raised): resuming knows it finished
    own_interval: bool = False  # the record's extra holds its own 95% interval (low, high)
    # Another metric of the same case this one is an exact function of (tokens per step are fixed
    # by the case, so tokens/s is the reciprocal of s/step): one hypothesis, tested once.
    same_test_as: str | None = None
    # The cross-check (`bench crosscheck`) holds this metric against a plain script's: the harness's
    # figure agrees when its ratio to the script's lies within this relative tolerance. None: not
    # cross-checked.
    fidelity_tolerance: float | None = None
    # The smallest absolute change, in the metric's unit, a comparison can call a regression or an
    # improvement: memory moves in the allocator's steps (torch's caching allocator rounds blocks up
    # to 2 MiB and reserves segments of up to 20 MiB; NVML counts in MiB), which on a small model are
    # a large share: the tiny model's 4.2 MB peak read 5.1 MB on a second H100 run, +20%.
    floor: float | None = None


M = Metric
MEMORY_FLOOR_GB = 0.05  # `floor` of memory figures: above the allocator's steps, below any change that matters
METRICS: dict[str, Metric] = {
    "load_s": M("s", "lower", ("load",),
                "model load time; params.cache: cold (the first load in a fresh process, the engine's first-use "
                "imports included, as in a user's script), warm (loaded before in the same process) or first (the "
                "first load on a machine: a fresh process with empty compile caches, measured by the cross-check's "
                "plain script)", gates=True, gate_where={"cache": "warm"}, tolerance=0.5, charted=True, frozen=True,
                fidelity_tolerance=0.10),
    "load_profiled_s": M("s", "lower", ("load",),
                         "one extra warm load, sampled, untimed: the sum of its phases (extra: phases, "
                         "the profiled wall time and the timed median beside it)", compared=False),
    "load_memory_gb": M("GB", "lower", ("load",), "torch allocated after load (CUDA) / RSS growth (CPU)",
                        tolerance=0.25, floor=MEMORY_FLOOR_GB),
    "peak_vram_gb": M("GB", "lower", ("load", "train", "infer"), "peak torch-allocated CUDA memory",
                      gates=True, tolerance=0.02, charted=True, frozen=True, closes_case=True,
                      fidelity_tolerance=0.05, floor=MEMORY_FLOOR_GB),
    "peak_reserved_gb": M("GB", "lower", ("load", "train", "infer"), "peak torch-reserved CUDA memory (caching allocator)",
                          tolerance=0.05, floor=MEMORY_FLOOR_GB),
    "nvml_peak_used_gb": M("GB", "lower", ("load", "train", "infer"),
                           "peak device memory used as NVML (nvidia-smi) reports it", tolerance=0.05, charted=True,
                           closes_case=True, floor=MEMORY_FLOOR_GB),
    "nvml_process_peak_gb": M("GB", "lower", ("load", "train", "infer"),
                              "peak GPU memory NVML counts for this process alone (context, allocator cache, "
                              "tensors): other processes on the GPU excluded", tolerance=0.05, charted=True,
                              floor=MEMORY_FLOOR_GB),
    "peak_rss_gb": M("GB", "lower", ("load", "train", "infer"), "peak resident memory of the process (CPU runs)",
                     tolerance=0.10, closes_case=True, floor=MEMORY_FLOOR_GB),
    "s_per_step": M("s", "lower", ("train",), "optimizer step time, warm-up step excluded",
                    gates=True, charted=True, frozen=True, fidelity_tolerance=0.10),
    "train_tokens_per_s": M("tok/s", "higher", ("train",), "non-padding tokens trained per second",
                            gates=True, charted=True, frozen=True, same_test_as="s_per_step"),
    "initial_loss": M("", "lower", ("train",), "training loss at the first logged step", tolerance=0.03),
    "final_loss": M("", "lower", ("train",), "training loss at the end: mean of the last 5 logged steps",
                    gates=True, tolerance=0.03, charted=True, frozen=True),
    "steps_to_target_loss": M("steps", "lower", ("train",), "first step whose loss is under the target (1.5)",
                              tolerance=0.25),
    "adapter_mb": M("MB", "lower", ("train",), "LoRA adapter size on disk", tolerance=0.01, frozen=True),
    "trainable_params_m": M("M", "lower", ("train",), "trainable LoRA parameters, millions", tolerance=0.0),
    "resume_loss_delta": M("", "lower", ("train",), "relative gap between resumed and uninterrupted loss",
                           tolerance=0.02),
    "ttft_s": M("s", "lower", ("infer", "serve"),
                "time to first token (prefill + first sample; served: from sending the request, queueing "
                "included; samples are each round's median)", gates=True, charted=True, frozen=True,
                fidelity_tolerance=0.10),
    "decode_tok_s": M("tok/s", "higher", ("infer",), "decode tokens per second, all sequences of the batch",
                      gates=True, charted=True, frozen=True, fidelity_tolerance=0.10),
    "decode_tok_s_per_seq": M("tok/s", "higher", ("infer",), "decode tokens per second per sequence"),
    "plain_ttft_s": M("s", "lower", ("infer",),
                      "time to first token timed as a user's script times it (a clock around a one-token generate), "
                      "in the case's own process before each round (--plain-control)"),
    "plain_decode_tok_s": M("tok/s", "higher", ("infer",),
                            "decode tokens per second timed as a user's script times it (a clock around a one-token "
                            "and a whole generate, the rate from their difference), in the case's own process before "
                            "each round (--plain-control): against decode_tok_s, what the case's code path costs"),
    "itl_p50_ms": M("ms", "lower", ("infer", "serve"), "median inter-token latency", gates=True, frozen=True),
    "itl_p90_ms": M("ms", "lower", ("serve",), "90th percentile inter-token latency"),
    "itl_p99_ms": M("ms", "lower", ("infer", "serve"), "99th percentile inter-token latency"),
    "first_generate_s": M("s", "lower", ("infer",), "first generate after loading (warm-up, compilation)",
                          tolerance=0.5),
    "energy_j_per_token": M("J/tok", "lower", ("infer", "train"), "GPU energy per generated or trained token",
                            charted=True),
    "energy_j_per_step": M("J", "lower", ("train",), "GPU energy per optimizer step (NVML counter)"),
    "gpu_util_pct": M("%", "higher", ("infer", "train"),
                      "mean GPU utilization (NVML): a diagnostic, lower is not worse", tolerance=None),
    "others_cpu_cores": M("cores", "lower", ("load", "train", "infer", "adapter"),
                          "CPU the rest of the host used while the case ran, in cores (the host's busy CPU time "
                          "minus this process tree's, over the case's wall time): a neighbour, or an isolated "
                          "child importing ahead of its turn, slows a host-bound case; extra: steal_pct, the "
                          "share of the machine's CPU time its hypervisor gave to others", tolerance=None),
    "profiled_round_s": M("s", "lower", ("infer", "train"),
                          "one extra round under torch.profiler (slowed by it, never timed); its extra holds the "
                          "top kernels or operators", compared=False),
    "gpu_busy_pct": M("%", "higher", ("infer", "train"),
                      "share of the profiled round's wall time the GPU executed kernels: low means host-bound",
                      tolerance=None),
    "launches_per_token": M("launches", "lower", ("infer",),
                            "kernels the host launched per decode step (one token of every sequence)",
                            tolerance=0.10),
    "launches_per_step": M("launches", "lower", ("train",), "kernels the host launched per optimizer step",
                           tolerance=0.10),
    "mbu": M("", "higher", ("infer",), "model bandwidth utilization: achieved/measured bandwidth"),
    "mfu": M("", "higher", ("train", "infer"), "model FLOPs utilization: achieved/measured matmul rate"),
    "adapter_roundtrip_equal": M("", "higher", ("adapter",),
                                 "1 when the reloaded adapter reproduces the in-memory one (adapter_reload_gap "
                                 "within its limit)", gates=True, tolerance=0.0, frozen=True),
    "adapter_reload_gap": M("", "lower", ("adapter",),
                            "how far the reloaded adapter's next-token distributions are from the in-memory "
                            "adapter's, as a share of how far the adapter moved the base model's"),
    "adapter_changes_output": M("", "higher", ("adapter",), "1 when the adapter's greedy choices differ from the base model's",
                                tolerance=0.0),
    "new_tokens": M("tok", "higher", ("infer",), "new tokens generated per sequence (the effort's budget)",
                    compared=False),
    "train_tok_s_alone": M("tok/s", "higher", ("concurrency",), "training tokens/s with nothing else running"),
    "train_tok_s_together": M("tok/s", "higher", ("concurrency",), "training tokens/s while serving runs"),
    "serve_tok_s_alone": M("tok/s", "higher", ("concurrency",), "generated tokens/s of batched serving alone"),
    "serve_tok_s_together": M("tok/s", "higher", ("concurrency",), "generated tokens/s while training runs"),
    "train_retained": M("", "higher", ("concurrency",),
                        "training throughput together / alone (1: no interference); extra has its 95% CI",
                        own_interval=True),
    "serve_retained": M("", "higher", ("concurrency",),
                        "serving throughput together / alone (1: no interference); extra has its 95% CI",
                        own_interval=True),
    "ttft_p90_s": M("s", "lower", ("serve",), "90th percentile time to first token over every request"),
    "ttft_p99_s": M("s", "lower", ("serve",), "99th percentile time to first token over every request"),
    "tpot_ms": M("ms", "lower", ("serve",),
                 "time per output token after the first, per request (vLLM's TPOT); samples are each round's median",
                 gates=True, charted=True, frozen=True),
    "tpot_p90_ms": M("ms", "lower", ("serve",), "90th percentile time per output token"),
    "tpot_p99_ms": M("ms", "lower", ("serve",), "99th percentile time per output token"),
    "e2e_s": M("s", "lower", ("serve",), "end-to-end request latency (median; samples per round)"),
    "e2e_p99_s": M("s", "lower", ("serve",), "99th percentile end-to-end request latency"),
    "output_tok_s": M("tok/s", "higher", ("serve",), "output tokens per second of all requests (one sample per round)",
                      gates=True, charted=True, frozen=True),
    "request_rps": M("req/s", "higher", ("serve",), "completed requests per second (one sample per round)"),
    "offered_rps": M("req/s", "higher", ("serve",), "the open-loop arrival rate a Poisson load point offered",
                     compared=False),
    "goodput_rps": M("req/s", "higher", ("serve",), "completed requests per second that met every SLO"),
    "slo_met": M("", "higher", ("serve",), "1 when the load point's p99 TTFT and TPOT met the SLOs with no "
                 "failed request (extra: the SLOs)", tolerance=0.0),
    "error_rate": M("", "lower", ("serve",), "share of requests that failed (HTTP error, broken stream)",
                    tolerance=0.0),
    "timeout_rate": M("", "lower", ("serve",), "share of requests that ran past the request timeout", tolerance=0.0),
    "client_cpu_pct": M("%", "lower", ("serve",),
                        "CPU the load generator itself used, as a share of one core over the round: its overhead",
                        compared=False),
    "client_lag_p99_ms": M("ms", "lower", ("serve",),
                           "99th percentile lateness of the client's event loop: above a few ms the client, not "
                           "the server, would be timing itself", compared=False),
    "first_request_s": M("s", "lower", ("serve",), "the server's first request (warm-up, never timed)",
                         tolerance=0.5),
    "fidelity_ratio": M("x", "higher", ("load", "train", "infer"),
                        "the cross-check: the harness's figure over a plain script's on the same host (params.figure "
                        "names the metric), from interleaved repeats; extra: each side's figures, the 95% interval "
                        "and the verdict (agrees, finding, unresolved) against the metric's tolerance",
                        compared=False, own_interval=True),
    "case_s": M("s", "lower", SUITES, "the case's wall time, its fixtures' setup included; extra: setup_s, call_s, "
                "timed_s (inside the timed rounds), phases (named untimed work; bench.analysis.time_budget "
                "says which are one-off costs)", compared=False),
    "case": M("", "higher", SUITES, "one record per case that failed, was skipped, ran out of memory or timed out",
              compared=False, closes_case=True),
}
del M

PARAM_KEYS = ("suite", "model", "backend", "lora_r", "batch_size", "grad_accum", "seq_len", "effort", "cache", "figure",
              "dtype", "gpu_index", "placement", "serve_batch", "server", "concurrency", "request_rate")


def gates(metric: str, params: dict) -> bool:
    """Whether a measurement of `metric` with `params` gates a comparison by default."""
    spec = METRICS.get(metric)
    if spec is None or not spec.gates:
        return False
    return all(str(params.get(k)) == str(v) for k, v in spec.gate_where.items())


def named(rule: str) -> tuple[str, ...]:
    """The metrics for which a boolean rule of the registry is set, in registry order."""
    return tuple(name for name, spec in METRICS.items() if getattr(spec, rule))
