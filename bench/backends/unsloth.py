"""Unsloth's FastLanguageModel on a CUDA GPU: the seed's engine.

`unsloth` must be imported before transformers, trl and peft (it patches them); the plugin imports
it at configure time, timed once per process and shown in the report, never inside a load timing.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from bench.backends import SEVEN_TARGETS, Loaded, LoraSettings
from bench.backends.common import TransformersBackend
from bench.models import ModelSource, local_weights, replica
from bench.models.store import cache_root


class UnslothBackend(TransformersBackend):
    name = "unsloth"
    quantized_variant = "unsloth-4bit"  # the cache's name for a replica this backend quantized

    def __init__(self, device: str, load_in_4bit: bool | None = None, max_seq_length: int = 1024) -> None:
        super().__init__(device, load_in_4bit)
        self.max_seq_length = max_seq_length
        self._prepared: dict[str, str] = {}

    def prepare(self, source: ModelSource) -> str:
        """A replica is quantized by Unsloth once and saved in 4-bit, so that later loads are cached
        loads of the 4-bit weights, as loading the published 4-bit checkpoint by name is."""
        if source.spec not in self._prepared:
            if self._quantizes(source):
                self._prepared[source.spec] = str(self._quantized_replica(source))
            else:
                self._prepared[source.spec] = super().prepare(source)
        return self._prepared[source.spec]

    def prepared(self, source: ModelSource) -> bool:
        if self._quantizes(source):
            return replica.is_built(source.replica_name, cache_root(), self.quantized_variant)
        return super().prepared(source)

    def build_ahead(self, source: ModelSource) -> tuple[Callable[..., None], tuple] | None:
        """What a process may build for `prepare` before it runs, while the run's first isolated
        child imports Unsloth: the bf16 scratch copy a replica not yet quantized is quantized from
        (`replica.build_ahead`, for this process's run); None when `prepare` will not need one."""
        if not self._quantizes(source):
            return None
        name, root = source.replica_name, cache_root()
        if any(replica.is_built(name, root, variant) for variant in (self.quantized_variant, "bf16")):
            return None
        return replica.build_ahead, (name, str(root), self.device, os.getpid())

    def servable(self, source: ModelSource) -> str:
        """A replica's bf16 weights, kept beside its 4-bit ones: plain transformers cannot run
        Unsloth's saved 4-bit GPT-OSS, whose fused expert weights stay bitsandbytes bytes (seen on an
        H200: `transformers serve` streamed nothing, and with continuous batching failed with
        "Expected mat_a to be Float32, BFloat16 or Float16 matrix, got Byte"). A published checkpoint
        is served as it is; for a 4-bit one, point `--endpoint` at a server that runs it."""
        if self._quantizes(source):
            return local_weights(source, self.device)
        return self.prepare(source)

    def _quantizes(self, source: ModelSource) -> bool:
        """A replica this backend quantizes itself (the published 4-bit checkpoints come quantized)."""
        return source.kind == "replica" and self.four_bit(source)

    def _quantized_replica(self, source: ModelSource) -> Path:
        """Unsloth quantizes the bf16 replica as it loads it (its own 4-bit layout for the experts)
        and saves the result. The bf16 weights come from the cache when a server already needed
        them, else from a scratch copy deleted afterwards: 39 GB less on disk for the 20B, and no
        disk write in /dev/shm. build.json keeps the seconds of each phase."""
        from filelock import FileLock

        name = source.replica_name
        root = cache_root()
        target = replica.build_dir(name, root, self.quantized_variant)
        with FileLock(str(target) + ".lock"):
            if (target / "build.json").is_file():
                return target
            import unsloth  # noqa: F401  (first, as in a user's script: building the bf16 copy imports transformers)

            tmp = target.with_name(target.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            if replica.is_built(name, root):
                meta = self._quantize(replica.build_dir(name, root), tmp)
            else:
                with replica.scratch_built(name, root, self.device) as scratch:
                    meta = {"bf16": json.loads((scratch / "build.json").read_text()), **self._quantize(scratch, tmp)}
            (tmp / "build.json").write_text(json.dumps(meta, indent=2))
            tmp.rename(target)
        return target

    def _quantize(self, bf16_dir: Path, out: Path) -> dict:
        from unsloth import FastLanguageModel

        started = time.perf_counter()
        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=str(bf16_dir), max_seq_length=self.max_seq_length, dtype=None, load_in_4bit=True)
        quantized = time.perf_counter()
        with replica.staged_saves() as staged:
            model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        meta = {"from": str(bf16_dir), "quantize_s": round(quantized - started, 3),
                "save_s": round(time.perf_counter() - quantized, 3), "layout": quantization_layout(model),
                "save_writer": "staged" if staged else "safetensors"}
        del model
        self._free()
        return meta

    def _load(self, source: ModelSource) -> Loaded:
        from unsloth import FastLanguageModel

        target = self.prepare(source)
        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=target, max_seq_length=self.max_seq_length, dtype=None, load_in_4bit=self.four_bit(source))
        info = {"engine": "unsloth", "dtype": "4-bit (bitsandbytes)" if self.four_bit(source) else "bf16",
                "quantization": quantization_layout(model)}
        return Loaded(model, tokenizer, source, info)

    def add_lora(self, loaded: Loaded, lora: LoraSettings) -> Loaded:
        from unsloth import FastLanguageModel

        model = FastLanguageModel.get_peft_model(
            loaded.model, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
            target_modules=list(SEVEN_TARGETS), use_gradient_checkpointing="unsloth", random_state=lora.seed)
        info = {**loaded.info, "lora_targets": "q,k,v,o,gate,up,down (Unsloth get_peft_model)"}
        return Loaded(model, loaded.tokenizer, loaded.source, info)

    def for_inference(self, loaded: Loaded) -> None:
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(loaded.model)
        loaded.tokenizer.padding_side = "left"


def quantization_layout(model) -> dict[str, int | str]:
    """What the loaded model holds, by kind: 4-bit linear layers, packed expert tensors, bf16 rest."""
    import torch

    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        kind = type(module).__name__
        if kind in ("Linear4bit", "Linear8bitLt", "Linear", "GptOssExperts") or "Expert" in kind:
            counts[kind] = counts.get(kind, 0) + 1
    by_dtype: dict[str, float] = {}
    for p in list(model.parameters()) + list(model.buffers()):
        key = str(p.dtype).removeprefix("torch.")
        by_dtype[key] = by_dtype.get(key, 0.0) + p.numel() * p.element_size() / 1e9
    return {**{f"modules_{k}": v for k, v in counts.items()},
            **{f"gb_{k}": round(v, 3) for k, v in by_dtype.items()},
            "cuda_allocated_gb": round(torch.cuda.memory_allocated() / 1e9, 3) if torch.cuda.is_available() else 0}
