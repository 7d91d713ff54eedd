"""What the transformers-based engines share: SFT through trl, batched generation, adapters."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.data.loading import store_dataset, stored_set_name
from bench.telemetry import failpoints
from bench.backends import Loaded, TrainSettings
from bench.models import ModelSource, local_weights, replica, tiny
from bench.models.store import cache_root


class TransformersBackend:
    """Base for engines built on transformers + peft + trl; subclasses load and add LoRA."""

    name = "base"

    def __init__(self, device: str, load_in_4bit: bool | None = None) -> None:
        self.device = device
        self.cuda = device.startswith("cuda")
        # 4-bit by default on a GPU (the seed's setting), never on the CPU (bitsandbytes needs CUDA).
        self.load_in_4bit = self.cuda if load_in_4bit is None else load_in_4bit
        self.loads = 0  # loads so far in this process: the first one is the cold one

    def load(self, source: ModelSource) -> Loaded:
        loaded = self._load(source)
        self.loads += 1
        return loaded

    def _load(self, source: ModelSource) -> Loaded:
        raise NotImplementedError

    def four_bit(self, source: ModelSource) -> bool:
        """4-bit for real-sized models (the seed's setting); the tiny model stays bf16 on a GPU,
        where 4-bit of 2 M parameters would measure nothing but overhead."""
        return self.load_in_4bit and source.kind != "tiny"

    def prepare(self, source: ModelSource) -> str:
        """Build or convert what must exist on disk before a load can be timed; for a hub name,
        check the HF cache first and never download (HF_HUB_OFFLINE) behind a timing."""
        if source.kind in ("hub", "path"):
            import os

            from bench.models.cache_check import require_loadable

            require_loadable(source.spec)
            os.environ["HF_HUB_OFFLINE"] = "1"
        return local_weights(source, self.device)

    def prepared(self, source: ModelSource) -> bool:
        """Whether `prepare` would only find its result on disk: nothing to build, convert or load."""
        if source.kind == "replica":
            return replica.is_built(source.replica_name, cache_root())
        return source.kind != "tiny" or tiny.is_built(cache_root())

    def servable(self, source: ModelSource) -> str:
        """The weights a separate `transformers serve` process runs (the serving suite's own server)."""
        return self.prepare(source)

    def build_ahead(self, source: ModelSource) -> tuple[Callable[..., None], tuple] | None:
        """`(function, args)`: what a process of its own may build for `prepare` while the run's
        first isolated child imports this engine; None: nothing worth building ahead."""
        return None

    @property
    def dtype(self):
        import torch

        return torch.bfloat16 if self.cuda else torch.float32

    def optimizer(self) -> str:
        """The seed's adamw_8bit where bitsandbytes can run it (CUDA), plain AdamW elsewhere."""
        import importlib.util

        return "adamw_8bit" if self.cuda and importlib.util.find_spec("bitsandbytes") else "adamw_torch"

    def sft_config(self, settings: TrainSettings, **overrides: Any):
        from trl import SFTConfig

        args = dict(
            output_dir=str(settings.output_dir), per_device_train_batch_size=settings.batch_size,
            gradient_accumulation_steps=settings.grad_accum, max_steps=settings.max_steps,
            learning_rate=settings.learning_rate, warmup_steps=settings.warmup_steps,
            lr_scheduler_type="linear", logging_steps=1, report_to=[], seed=settings.seed,
            max_length=settings.max_seq_length, disable_tqdm=True, dataloader_num_workers=0,
            save_strategy="steps" if settings.save_steps else "no", save_steps=settings.save_steps or 500,
            bf16=self.cuda, fp16=False, use_cpu=not self.cuda, optim=self.optimizer(),
            # The loss checks are on the language-model loss alone: the MoE load-balancing term
            # (router_aux_loss_coef 0.9 in gpt-oss's config) is left out, as the seed's runs did.
            router_aux_loss_coef=0.0,
            include_num_input_tokens_seen="non_padding",
        )
        args.update(overrides)
        return SFTConfig(**args)

    def trainer(self, loaded: Loaded, dataset: Any, settings: TrainSettings, callbacks: list) -> Any:
        from trl import SFTTrainer

        args = self.sft_config(settings)
        stored = prepared_set_path(dataset, loaded.tokenizer, args.max_length)
        if stored is not None and stored.is_dir():
            import datasets

            dataset = datasets.load_from_disk(str(stored), keep_in_memory=True)
        trainer = SFTTrainer(model=loaded.model, args=args, train_dataset=dataset,
                             processing_class=loaded.tokenizer, callbacks=callbacks)
        if stored is not None and not stored.is_dir():
            store_dataset(trainer.train_dataset, stored)
        return trainer

    def for_inference(self, loaded: Loaded) -> None:
        loaded.model.eval()
        loaded.tokenizer.padding_side = "left"

    def generate(self, loaded: Loaded, prompts: list[str], max_new_tokens: int,
                 logits_processor: list | None = None) -> list[list[int]]:
        """Greedy batched generation with left padding and a fixed budget of new tokens.

        min_new_tokens = max_new_tokens keeps every sequence decoding for the whole budget, so
        tokens/s compares like with like across runs; what the model said before its own end
        token is still read from the output (channels).
        """
        import torch
        from transformers import LogitsProcessorList

        failpoints.before_generate(len(prompts))
        tok = loaded.tokenizer
        tok.padding_side = "left"
        inputs = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        with torch.inference_mode():
            out = loaded.model.generate(
                **inputs, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=tok.pad_token_id, logits_processor=LogitsProcessorList(logits_processor or []))
        return out[:, inputs["input_ids"].shape[1]:].tolist()

    def load_adapter(self, base: Loaded, path: Path) -> Loaded:
        """The seed's fix, for every engine: base model, then PeftModel.from_pretrained, then the
        engine's own inference mode (for Unsloth, FastLanguageModel.for_inference)."""
        from peft import PeftModel

        model = PeftModel.from_pretrained(base.model, str(path))
        loaded = Loaded(model, base.tokenizer, base.source, {**base.info, "adapter": str(path)})
        self.for_inference(loaded)
        return loaded

    def save_adapter(self, loaded: Loaded, path: Path) -> None:
        loaded.model.save_pretrained(str(path))

    def unload(self, loaded: Loaded) -> None:
        loaded.model = None
        self._free()

    def _free(self) -> None:
        gc.collect()
        if self.cuda:
            import torch

            torch.cuda.empty_cache()


def prepared_set_path(dataset: Any, tokenizer: Any, max_length: int | None) -> Path | None:
    """Where the training set as SFTTrainer prepares it (tokenized, labelled, truncated) is kept.

    SFTTrainer tokenizes the whole set every time a trainer is built (2 s of each training case's
    set-up on the tiny model, once more in every isolated process) and skips that for a set that has
    input_ids already: the rows and their order are the same either way. The key is the raw set's
    content fingerprint (deterministic across processes), the tokenizer, the length and the library
    versions that prepare it. None: a set without a fingerprint (a streamed one), prepared each time."""
    fingerprint = getattr(dataset, "_fingerprint", None)
    if fingerprint is None:
        return None
    import datasets
    import trl

    from bench.models.store import cache_root

    return cache_root() / "prepared-sets" / stored_set_name(fingerprint, tokenizer.name_or_path, len(tokenizer),
                                                            max_length, trl.__version__, datasets.__version__)
