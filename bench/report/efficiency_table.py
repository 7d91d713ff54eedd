"""Per-case efficiency for a run's report: MBU of decoding, MFU of training and prefill, energy
and cost per token, from the records, the model's config and the GPU's measured ceilings."""

from __future__ import annotations

import json
from pathlib import Path

from bench.analysis.roofline import Shape, mbu, mfu, roofline_point
from bench.records.profiles import get_profile
from bench.analysis.runs import RunData


def model_shape(model: str) -> Shape | None:
    """The config of a replica, the tiny model, a local path or a cached hub model; None if unknown."""
    try:
        if model.startswith("replica:"):
            from bench.models.replica import config_dict

            return Shape.from_config(config_dict(model.split(":", 1)[1]))
        if model == "tiny-gpt-oss":
            from bench.models import tiny

            path = tiny.built_dir() / "config.json"
            return Shape.from_config(json.loads(path.read_text())) if path.is_file() else None
        if Path(model).is_dir():
            return Shape.from_config(json.loads((Path(model) / "config.json").read_text()))
        from transformers import AutoConfig

        return Shape.from_config(AutoConfig.from_pretrained(model, local_files_only=True))
    except Exception:  # no config to be had offline: the report shows no efficiency figures
        return None


def precision_of(records: list) -> str:
    info = next((r.extra.get("backend_info", {}) for r in records if r.metric == "load_s"), {})
    text = json.dumps(info).lower()
    if "experts bf16" in text:  # bitsandbytes on GPT-OSS: attention 4-bit, the experts (most bytes) bf16
        return "bf16"
    if "4-bit" in text or "nf4" in text:
        return "4bit"
    return "fp32" if all(r.gpu_index is None for r in records) else "bf16"


def ceilings_of(run: RunData, record) -> dict:
    """The measured ceilings of the GPU that ran a record (each GPU of a multi-GPU run has its own)."""
    for gpu in run.manifest.gpus:
        if gpu.get("calibration") and gpu.get("uuid") == record.gpu_uuid:
            return gpu["calibration"]
    return run.manifest.calibration


def efficiency_rows(run: RunData, price_per_hour: float | None = None) -> tuple[list[dict], list[tuple]]:
    """Rows for the efficiency table and (label, intensity, TFLOP/s) points for the roofline."""
    shape = model_shape(run.manifest.model)
    if shape is None:
        return [], []
    profile = get_profile(run.manifest.profile)
    lanes: dict[str, list] = {}
    for r in run.records:
        lanes.setdefault(run.lane(r), []).append(r)
    precision = {lane: precision_of(records) for lane, records in lanes.items()}
    by_case: dict[tuple, dict] = {}
    for r in run.ok:
        key = (run.lane(r), r.test_id)
        if key not in by_case:
            by_case[key] = {"params": r.params, "label": run.label(r), "lane": key[0], "ceilings": ceilings_of(run, r)}
        by_case[key][r.metric] = r
    rows, points = [], []
    for case in by_case.values():
        params, label, ceilings, bits = case["params"], case["label"], case["ceilings"], precision[case["lane"]]
        if not ceilings:
            continue
        prefix = f"{case['lane']} " if case["lane"] else ""
        if "decode_tok_s" in case and "itl_p50_ms" in case:
            b = int(params["batch_size"])
            prompt = case["decode_tok_s"].extra.get("prompt_tokens", 0)
            context = prompt + case.get("new_tokens").value / 2 if "new_tokens" in case else prompt
            step_s = case["itl_p50_ms"].value / 1000
            row = {"suite": "infer", "case": label, "mbu": mbu(shape, b, int(context), bits, step_s, ceilings["copy_gbps"]),
                   "mfu": None, "energy": _value(case, "energy_j_per_token")}
            if "ttft_s" in case and prompt:
                row["mfu"] = mfu(shape.prefill_flops_per_token(prompt), b * prompt / case["ttft_s"].value,
                                 ceilings["matmul_tflops"])
            if price_per_hour:
                row["usd_per_mtok"] = price_per_hour / 3600 / case["decode_tok_s"].value * 1e6
            rows.append(row)
            points.append((f"{prefix}decode bs{b}", *roofline_point(2 * shape.active_params * b,
                                                                     shape.decode_step_bytes(b, int(context), bits),
                                                                     step_s)))
        if "train_tokens_per_s" in case and "s_per_step" in case:
            tps, step_s = case["train_tokens_per_s"].value, case["s_per_step"].value
            seq_len = int(params.get("seq_len", profile.max_seq_length))  # a fit profile's case has its own
            row = {"suite": "train", "case": label, "mbu": None,
                   "mfu": mfu(shape.train_flops_per_token(seq_len), tps, ceilings["matmul_tflops"]),
                   "energy": _value(case, "energy_j_per_token"), "energy_step": _value(case, "energy_j_per_step")}
            if price_per_hour:
                row["usd_per_mtok"] = price_per_hour / 3600 / tps * 1e6
                row["usd_per_run"] = price_per_hour / 3600 * step_s * profile.train_steps
            rows.append(row)
            weights = shape.weight_bytes(bits)  # a training step uses every expert
            tokens = tps * step_s
            points.append((f"{prefix}train r{params.get('lora_r')}", *roofline_point(
                shape.train_flops_per_token(seq_len) * tokens, 3 * weights * params.get("grad_accum", 1), step_s)))
    return rows, points


def run_energy(run: RunData, price_per_hour: float | None) -> dict | None:
    """Energy and GPU time of every measured case together (NVML, whole device), and their cost."""
    usages = [r.extra["usage"] for r in run.records if isinstance(r.extra.get("usage"), dict)]
    joules = [u["energy_j"] for u in usages if u.get("energy_j") is not None]
    if not joules:
        return None
    seconds = sum(u.get("duration_s") or 0.0 for u in usages)
    return {"kj": sum(joules) / 1000, "cases": len(joules), "gpu_hours": seconds / 3600,
            "usd": price_per_hour * seconds / 3600 if price_per_hour else None}


def _value(case: dict, metric: str) -> float | None:
    return case[metric].value if metric in case else None
