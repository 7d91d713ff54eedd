"""`tiny-gpt-oss`: a few-million-parameter GptOssForCausalLM built offline and cached.

It has the 20B model's architecture (mixture of experts with top-k routing, alternating sliding and
full attention, attention sinks, harmony chat template) at a size a 2-core CPU trains in seconds.
The base is pre-trained on the bundled corpus, as prose and in the harmony chat format, but its
chat examples always reason in English whatever language the developer message asks for. LoRA
fine-tuning on the bundled set (reasoning in the requested language) therefore starts from a real
loss above the documented 1.5 and has to learn its way under it, as the seed's run did
(2.04 -> 1.43).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.data.synthetic import make_rows, pretraining_text
from bench.models.store import cache_root

log = logging.getLogger(__name__)

NAME = "tiny-gpt-oss"
# Bump when anything that changes the built weights changes: the cache is keyed by it.
BUILD_VERSION = 1
SEED = 1234
VOCAB_SIZE = 2048
PRETRAIN_ROWS = 6000
PRETRAIN_STEPS = 260
PRETRAIN_BATCH = 8
BLOCK = 256
SPECIAL_TOKENS = ["<|endoftext|>", "<|startoftext|>", "<|start|>", "<|end|>", "<|message|>",
                  "<|channel|>", "<|return|>", "<|constrain|>", "<|call|>"]
TEMPLATE = Path(__file__).with_name("chat_template.jinja")


def built_dir(root: Path | None = None) -> Path:
    """Where this build version of the tiny model lives (built or not)."""
    return (root or cache_root()) / f"{NAME}-v{BUILD_VERSION}"


def model_config(vocab_size: int = VOCAB_SIZE, pad_id: int = 0, eos_id: int = 6, bos_id: int = 1):
    from transformers import GptOssConfig

    return GptOssConfig(
        num_hidden_layers=4, num_local_experts=8, num_experts_per_tok=2, vocab_size=vocab_size,
        hidden_size=128, intermediate_size=128, head_dim=32, num_attention_heads=4,
        num_key_value_heads=2, sliding_window=64, max_position_embeddings=2048,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        pad_token_id=pad_id, eos_token_id=eos_id, bos_token_id=bos_id, tie_word_embeddings=False,
        output_router_logits=False,
    )


def ensure_built(root: Path | None = None) -> Path:
    """Return the cached model directory, building it first if it is missing or unreadable."""
    root = root or cache_root()
    return _made_once(root, built_dir(root), NAME, _is_complete, build)


def is_built(root: Path | None = None) -> bool:
    """Whether `ensure_built` would only find the model (nothing to build)."""
    return _is_complete(built_dir(root or cache_root()))


def _made_once(root: Path, target: Path, name: str, usable: Callable[[Path], bool],
               make: Callable[[Path], object]) -> Path:
    """`target`, made by `make(scratch)` in a scratch directory beside it and renamed (whole or not
    at all), under a lock so that processes asking at once make it once; an unusable one is made again."""
    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{name}.lock")):
        if usable(target):
            return target
        if target.exists():
            log.warning("%s is incomplete or corrupt: rebuilding", target)
            shutil.rmtree(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        try:
            make(tmp)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _is_complete(path: Path) -> bool:
    """A build is usable when its marker, config, weights and tokenizer all parse."""
    try:
        meta = json.loads((path / "build.json").read_text())
        json.loads((path / "config.json").read_text())
        json.loads((path / "tokenizer.json").read_text())
        weights = path / "model.safetensors"
        if meta.get("version") != BUILD_VERSION or not weights.is_file():
            return False
        from safetensors import safe_open

        with safe_open(str(weights), framework="numpy") as f:  # names only: no torch to import (5 s on a GPU host)
            return len(list(f.keys())) > 0
    except (OSError, ValueError, KeyError):
        return False
    except Exception:  # safetensors raises its own error type for a truncated file
        return False


def train_tokenizer(texts: list[str]):
    """A byte-level BPE tokenizer trained on the bundled corpus, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|startoftext|>", eos_token="<|return|>",
        pad_token="<|endoftext|>", padding_side="left", model_max_length=2048,
    )
    fast.chat_template = TEMPLATE.read_text()
    return fast


def _without_analysis(messages: list[dict]) -> list[dict]:
    return [{**m, "thinking": None} for m in messages]


def _corpus_and_tokenizer():
    """The pre-training texts (prose, then the chat rows as the template renders them) and the
    tokenizer trained on them; deterministic, so a tokenizer trained alone is the model's."""
    rows = make_rows(PRETRAIN_ROWS, seed=SEED)
    prose = [pretraining_text(r) for r in rows]
    renderer = train_tokenizer(prose)  # only to render the chat rows the real tokenizer is trained on
    english_chat = [renderer.apply_chat_template(_without_analysis(r["messages"]), tokenize=False,
                                                 reasoning_effort=r["reasoning_effort"])
                    for r in make_rows(PRETRAIN_ROWS, seed=SEED + 1)]
    return prose, english_chat, train_tokenizer(prose + english_chat)


def tokenizer_dir(root: Path | None = None) -> Path:
    """Where the tiny model's tokenizer is, for a replica that borrows it: the built model's where
    there is one, else the tokenizer trained and cached alone (2.5 s). Building the whole model to
    get it pre-trains for a minute or more: 98.7 s inside an H100 host's replica preparation."""
    root = root or cache_root()
    if _is_complete(built_dir(root)):
        return built_dir(root)
    return _made_once(root, root / f"{NAME}-tokenizer-v{BUILD_VERSION}", f"{NAME}-tokenizer",
                      lambda path: (path / "tokenizer.json").is_file(),
                      lambda scratch: _corpus_and_tokenizer()[2].save_pretrained(scratch))


def build(out: Path) -> dict:
    """Train the tokenizer, pre-train the base on plain prose, save both: about a minute on 2 cores."""
    import torch

    started = time.perf_counter()
    prose, english_chat, tokenizer = _corpus_and_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    config = model_config(len(tokenizer), ids("<|endoftext|>"), ids("<|return|>"), ids("<|startoftext|>"))

    # A one-off that may take every core: the harness runs the tiny model's cases on one thread for
    # steady timings (workload.one_thread), and the build waited on that thread for a minute or more.
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or threads)
    try:
        return _pretrain(out, tokenizer, prose, english_chat, config, started)
    finally:
        torch.set_num_threads(threads)


def _pretrain(out: Path, tokenizer, prose: list[str], english_chat: list[str], config, started: float) -> dict:
    import torch
    from transformers import GenerationConfig, GptOssForCausalLM

    ids = tokenizer.convert_tokens_to_ids
    torch.manual_seed(SEED)
    model = GptOssForCausalLM(config)
    stream: list[int] = []
    for text_pair in zip(prose, english_chat):
        for text in text_pair:
            stream += tokenizer(text)["input_ids"] + [config.eos_token_id]
    blocks = torch.tensor(stream[: len(stream) // BLOCK * BLOCK]).view(-1, BLOCK)
    gen = torch.Generator().manual_seed(SEED)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=3e-3, total_steps=PRETRAIN_STEPS, pct_start=0.1)
    model.train()
    losses = []
    for _ in range(PRETRAIN_STEPS):
        batch = blocks[torch.randint(len(blocks), (PRETRAIN_BATCH,), generator=gen)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        optim.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    model.generation_config = GenerationConfig(
        eos_token_id=[ids("<|return|>"), ids("<|call|>")], pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id, do_sample=False)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    meta = {"version": BUILD_VERSION, "name": NAME, "seed": SEED, "pretrain_steps": PRETRAIN_STEPS,
            "pretrain_loss_first": losses[0], "pretrain_loss_last": sum(losses[-10:]) / 10,
            "parameters": sum(p.numel() for p in model.parameters()),
            "build_s": time.perf_counter() - started}
    (out / "build.json").write_text(json.dumps(meta, indent=2))
    return meta
