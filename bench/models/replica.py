"""`replica:<name>`: a published model configuration with random weights.

Same shapes as the real model, hence the same speed and memory; built directly on the GPU in bf16
(building in fp32 first would need twice the memory) and cached on disk, so a second load is a
cached load as the seed measured. The tokenizer is the tiny model's: the real one cannot be
downloaded here, and random weights make the token ids meaningless anyway; prompts therefore have
a different token count than with the real tokenizer (documented in the report). It is widened to
the real vocabulary with filler tokens (` w1234`), so that every id the random weights pick decodes
to text: a server streams text, and an id without a string is a token it never sends.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from bench.errors import BenchError

CONFIG_DIR = Path(__file__).with_name("configs")


def available() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def split_name(name: str) -> tuple[str, int | None]:
    """`gpt-oss-20b@layers=4` is the published config cut to its first 4 layers: same widths,
    experts and vocabulary, so the same per-layer cost, for a smoke test on a smaller GPU."""
    base, _, override = name.partition("@")
    if not override:
        return base, None
    key, _, value = override.partition("=")
    if key != "layers" or not value.isdigit() or int(value) < 1:
        raise BenchError(f"--model replica:{name}: the only override is @layers=N (N >= 1), e.g. replica:{base}@layers=4")
    return base, int(value)


def config_path(name: str) -> Path:
    base, _ = split_name(name)
    path = CONFIG_DIR / f"{base}.json"
    if not path.is_file():
        raise BenchError(f"--model replica:{name}: no bundled config; available: {', '.join(available())}")
    return path


def model_config(name: str):
    from transformers import GptOssConfig

    data = {k: v for k, v in json.loads(config_path(name).read_text()).items() if not k.startswith("_")}
    _, layers = split_name(name)
    if layers is not None:
        data["num_hidden_layers"] = layers
        data["layer_types"] = data["layer_types"][:layers]
    return GptOssConfig(**data)


def build_dir(name: str, root: Path, variant: str = "bf16") -> Path:
    """Where a replica's weights of one variant (bf16, or a backend's quantized copy) are cached."""
    return root / f"replica-{name.replace('@layers=', '-layers')}-{variant}"


def ensure_built(name: str, root: Path, device: str) -> Path:
    """The bf16 replica directory, built on `device` on first use (tokenizer from the tiny model)."""
    import torch
    from filelock import FileLock
    from transformers import AutoTokenizer, GptOssForCausalLM

    from bench.models import tiny

    target = build_dir(name, root)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "build.json").is_file():
            widen_tokenizer(target / "tokenizer.json", model_config(name).vocab_size)  # a replica built before this
            return target
        shutil.rmtree(target, ignore_errors=True)
        started = time.perf_counter()
        config = model_config(name)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)
        try:
            torch.manual_seed(0)
            with torch.device(device):
                model = GptOssForCausalLM(config)
        finally:
            torch.set_default_dtype(previous)
        built_s = time.perf_counter() - started
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer = AutoTokenizer.from_pretrained(tiny.ensure_built(root))
        tokenizer.save_pretrained(tmp)
        widen_tokenizer(tmp / "tokenizer.json", config.vocab_size)
        n_params = sum(p.numel() for p in model.parameters())
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        meta = {"name": name, "parameters": n_params, "build_s": built_s,
                "save_s": time.perf_counter() - started - built_s, "dtype": "bfloat16"}
        (tmp / "build.json").write_text(json.dumps(meta, indent=2))
        tmp.rename(target)
    return target


def widen_tokenizer(path: Path, vocab_size: int) -> None:
    """Give every id below `vocab_size` a string: filler entries ` w<id>` after the tiny
    vocabulary (never produced by encoding, only by decoding what the model picked)."""
    data = json.loads(path.read_text())
    vocab = data["model"]["vocab"]
    if len(vocab) >= vocab_size:
        return
    taken = set(vocab.values()) | {token["id"] for token in data.get("added_tokens", [])}
    vocab.update({f"\u0120w{i}": i for i in range(vocab_size) if i not in taken})  # \u0120: byte-level space
    path.write_text(json.dumps(data, ensure_ascii=False))
