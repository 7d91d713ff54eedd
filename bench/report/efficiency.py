"""Per-case efficiency for a run's report: MBU of decoding, MFU of training and prefill, energy
and cost per token, from the records, the model's config and the GPU's measured ceilings."""

from __future__ import annotations

import json
from pathlib import Path

from bench.efficiency import Shape, mbu, mfu, roofline_point
from bench.matrix import get_profile
from bench.report.data import RunData, describe_params


def model_shape(model: str) -> Shape | None:
    """The config of a replica, the tiny model, a local path or a cached hub model; None if unknown."""
    try:
        if model.startswith("replica:"):
            from bench.models.replica import model_config

            return Shape.from_config(model_config(model.split(":", 1)[1]))
        if model == "tiny-gpt-oss":
            from bench.models import tiny

            path = tiny.cache_root() / f"{tiny.NAME}-v{tiny.BUILD_VERSION}" / "config.json"
            return Shape.from_config(json.loads(path.read_text())) if path.is_file() else None
        if Path(model).is_dir():
            return Shape.from_config(json.loads((Path(model) / "config.json").read_text()))
        from transformers import AutoConfig

        return Shape.from_config(AutoConfig.from_pretrained(model, local_files_only=True))
    except Exception:  # no config to be had offline: the report shows no efficiency figures
        return None


def precision_of(run: RunData) -> str:
    info = next((r.extra.get("backend_info", {}) for r in run.records if r.metric == "load_s"), {})
    text = json.dumps(info).lower()
    if "4-bit" in text or "nf4" in text:
        return "4bit"
    return "fp32" if run.manifest.device == "cpu" else "bf16"


def efficiency_rows(run: RunData, price_per_hour: float | None = None) -> tuple[list[dict], list[tuple]]:
    """Rows for the efficiency table and (label, intensity, TFLOP/s) points for the roofline."""
    ceilings = run.manifest.calibration
    shape = model_shape(run.manifest.model)
    if not ceilings or shape is None:
        return [], []
    precision = precision_of(run)
    seq_len = get_profile(run.manifest.profile).max_seq_length  # the longest a training row can be
    by_case: dict[str, dict] = {}
    for r in run.ok:
        by_case.setdefault(r.test_id, {"suite": r.suite, "params": r.params})[r.metric] = r
    rows, points = [], []
    for case in by_case.values():
        params, label = case["params"], describe_params(case["params"])
        if "decode_tok_s" in case and "itl_p50_ms" in case:
            b = int(params["batch_size"])
            prompt = case["decode_tok_s"].extra.get("prompt_tokens", 0)
            context = prompt + case.get("new_tokens").value / 2 if "new_tokens" in case else prompt
            step_s = case["itl_p50_ms"].value / 1000
            row = {"suite": "infer", "case": label, "mbu": mbu(shape, b, int(context), precision, step_s, ceilings["copy_gbps"]),
                   "mfu": None, "energy": case["energy_j_per_token"].value if "energy_j_per_token" in case else None}
            if "ttft_s" in case and prompt:
                row["mfu"] = mfu(shape.prefill_flops_per_token(prompt), b * prompt / case["ttft_s"].value,
                                 ceilings["matmul_tflops"])
            if price_per_hour:
                row["usd_per_mtok"] = price_per_hour / 3600 / case["decode_tok_s"].value * 1e6
            rows.append(row)
            points.append((f"decode bs{b}", *roofline_point(2 * shape.active_params * b,
                                                            shape.decode_step_bytes(b, int(context), precision), step_s)))
        if "train_tokens_per_s" in case and "s_per_step" in case:
            tps = case["train_tokens_per_s"].value
            seq = seq_len
            row = {"suite": "train", "case": label, "mbu": None,
                   "mfu": mfu(shape.train_flops_per_token(seq), tps, ceilings["matmul_tflops"]),
                   "energy": case["energy_j_per_token"].value if "energy_j_per_token" in case else None}
            if price_per_hour:
                row["usd_per_mtok"] = price_per_hour / 3600 / tps * 1e6
            rows.append(row)
            weights = shape.weight_bytes(precision)  # a training step uses every expert
            tokens = tps * case["s_per_step"].value
            points.append((f"train r{params.get('lora_r')}", *roofline_point(
                shape.train_flops_per_token(seq) * tokens, 3 * weights * params.get("grad_accum", 1),
                case["s_per_step"].value)))
    return rows, points
