"""Every metric the suites emit: unit, which direction is better, and what it means.

Baseline files and comparisons are validated against this table, so a typo in a metric name is an
error before anything runs instead of a check that silently matches nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    unit: str
    better: str
    suites: tuple[str, ...]
    doc: str


METRICS: dict[str, Metric] = {
    "load_s": Metric("s", "lower", ("load",), "model load time; params.cache says cold (first in process) or warm"),
    "load_memory_gb": Metric("GB", "lower", ("load",), "torch allocated after load (CUDA) / RSS growth (CPU)"),
    "peak_vram_gb": Metric("GB", "lower", ("load", "train", "infer"), "peak torch-allocated CUDA memory"),
    "peak_reserved_gb": Metric("GB", "lower", ("load", "train", "infer"), "peak torch-reserved CUDA memory (caching allocator)"),
    "nvml_peak_used_gb": Metric("GB", "lower", ("load", "train", "infer"), "peak device memory used as NVML (nvidia-smi) reports it"),
    "peak_rss_gb": Metric("GB", "lower", ("load", "train", "infer"), "peak resident memory of the process (CPU runs)"),
    "s_per_step": Metric("s", "lower", ("train",), "optimizer step time, warm-up step excluded"),
    "train_tokens_per_s": Metric("tok/s", "higher", ("train",), "non-padding tokens trained per second"),
    "initial_loss": Metric("", "lower", ("train",), "training loss at the first logged step"),
    "final_loss": Metric("", "lower", ("train",), "training loss at the end: mean of the last 5 logged steps"),
    "steps_to_target_loss": Metric("steps", "lower", ("train",), "first step whose loss is under the target (1.5)"),
    "adapter_mb": Metric("MB", "lower", ("train",), "LoRA adapter size on disk"),
    "trainable_params_m": Metric("M", "lower", ("train",), "trainable LoRA parameters, millions"),
    "resume_loss_delta": Metric("", "lower", ("train",), "relative gap between resumed and uninterrupted loss"),
    "ttft_s": Metric("s", "lower", ("infer",), "time to first token (prefill + first sample)"),
    "decode_tok_s": Metric("tok/s", "higher", ("infer",), "decode tokens per second, all sequences of the batch"),
    "decode_tok_s_per_seq": Metric("tok/s", "higher", ("infer",), "decode tokens per second per sequence"),
    "itl_p50_ms": Metric("ms", "lower", ("infer",), "median inter-token latency"),
    "itl_p99_ms": Metric("ms", "lower", ("infer",), "99th percentile inter-token latency"),
    "first_generate_s": Metric("s", "lower", ("infer",), "first generate after loading (warm-up, compilation)"),
    "energy_j_per_token": Metric("J/tok", "lower", ("infer", "train"), "GPU energy per generated or trained token"),
    "energy_j_per_step": Metric("J", "lower", ("train",), "GPU energy per optimizer step (NVML counter)"),
    "gpu_util_pct": Metric("%", "higher", ("infer", "train"), "mean GPU utilization (NVML)"),
    "mbu": Metric("", "higher", ("infer",), "model bandwidth utilization: achieved/measured bandwidth"),
    "mfu": Metric("", "higher", ("train", "infer"), "model FLOPs utilization: achieved/measured matmul rate"),
    "adapter_roundtrip_equal": Metric("", "higher", ("adapter",), "1 when reloaded adapter reproduces in-memory outputs"),
    "adapter_changes_output": Metric("", "higher", ("adapter",), "1 when the adapter's outputs differ from the base model's"),
    "new_tokens": Metric("tok", "higher", ("infer",), "new tokens generated per sequence (the effort's budget)"),
    "train_tok_s_alone": Metric("tok/s", "higher", ("concurrency",), "training tokens/s with nothing else running"),
    "train_tok_s_together": Metric("tok/s", "higher", ("concurrency",), "training tokens/s while serving runs"),
    "serve_tok_s_alone": Metric("tok/s", "higher", ("concurrency",), "generated tokens/s of batched serving alone"),
    "serve_tok_s_together": Metric("tok/s", "higher", ("concurrency",), "generated tokens/s while training runs"),
    "train_retained": Metric("", "higher", ("concurrency",),
                             "training throughput together / alone (1: no interference); extra has its 95% CI"),
    "serve_retained": Metric("", "higher", ("concurrency",),
                             "serving throughput together / alone (1: no interference); extra has its 95% CI"),
    "case": Metric("", "higher", ("load", "train", "infer", "adapter", "concurrency"),
                   "one record per case that failed, was skipped, ran out of memory or timed out"),
}

PARAM_KEYS = ("suite", "model", "backend", "lora_r", "batch_size", "grad_accum", "effort", "cache",
              "dtype", "gpu_index", "placement", "serve_batch")


SUITES = ("load", "train", "infer", "adapter", "concurrency")


def metric(name: str) -> Metric:
    return METRICS[name]
