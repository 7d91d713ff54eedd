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

import contextlib
import json
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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


def config_dict(name: str) -> dict:
    """The bundled config with the @layers override applied, as plain JSON: the report reads the
    model's shape from it in the parent of isolated children, which imports no transformers (10 s
    or more on an H100 host, after the run's end)."""
    data = {k: v for k, v in json.loads(config_path(name).read_text()).items() if not k.startswith("_")}
    _, layers = split_name(name)
    if layers is not None:
        data["num_hidden_layers"] = layers
        data["layer_types"] = data["layer_types"][:layers]
    return data


def model_config(name: str):
    from transformers import GptOssConfig

    return GptOssConfig(**config_dict(name))


def build_dir(name: str, root: Path, variant: str = "bf16") -> Path:
    """Where a replica's weights of one variant (bf16, or a backend's quantized copy) are cached."""
    return root / f"replica-{name.replace('@layers=', '-layers')}-{variant}"


def is_built(name: str, root: Path, variant: str = "bf16") -> bool:
    """Whether the cache holds a finished build of this variant (its build.json is written last)."""
    return (build_dir(name, root, variant) / "build.json").is_file()


def ensure_built(name: str, root: Path, device: str) -> Path:
    """The bf16 replica directory, built on `device` on first use (tokenizer from the tiny model)."""
    from filelock import FileLock

    target = build_dir(name, root)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "build.json").is_file():
            widen_tokenizer(target / "tokenizer.json", model_config(name).vocab_size)  # a replica built before this
            return target
        shutil.rmtree(target, ignore_errors=True)
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)  # a build killed half way: its shards may be numbered otherwise
        write_replica(model_config(name), tmp, device, root, name)
        tmp.rename(target)
    return target


@contextlib.contextmanager
def scratch_built(name: str, root: Path, device: str) -> Iterator[Path]:
    """A bf16 replica for one use (a backend quantizing it), deleted afterwards: in /dev/shm when
    it has room, else beside the cache. Memory rather than disk for the room, not the speed: the
    20B's 42 GB on a 64 GiB disk beside its 4-bit copy, where writing them took about as long to
    either on an H100 host (41 s and 37 s). One `build_ahead` made for this process's run is taken
    instead, once it is finished."""
    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(_ahead_lock(name, root))):  # a build ahead under way: wait for it
        ahead = _built_ahead(name, root)
    config = model_config(name)
    directory = ahead or _new_scratch(os.getpid(), name, root, config)
    try:
        if ahead is None:
            write_replica(config, directory, device, root, name)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def build_ahead(name: str, root: str, device: str, owner: int) -> None:
    """The bf16 scratch copy `scratch_built` will want, built in a process of its own while the
    run's first isolated child imports its engine (Unsloth: 26-32 s on an H100 host; this build and
    write: 7-9 s for the 20B). Named for `owner`, the run's process, which outlives it: an orphan
    only once the run is gone. `scratch_built` waits for it on a lock and deletes it after use."""
    from filelock import FileLock

    cache = Path(root)
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(_ahead_lock(name, cache))):
        if _built_ahead(name, cache) is not None:
            return
        config = model_config(name)
        directory = _new_scratch(owner, name, cache, config, f"{AHEAD}-")
        try:
            write_replica(config, directory, device, cache, name)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise


def remove_built_ahead(owner: int, root: Path) -> None:
    """What `build_ahead` made for `owner`'s run and no preparation took (it failed, or was not run)."""
    for where in (SHM, root):
        for stale in where.glob(f"{SCRATCH_PREFIX}{owner}-*-{AHEAD}-*"):
            shutil.rmtree(stale, ignore_errors=True)


def _ahead_lock(name: str, root: Path) -> Path:
    return root / f"{build_dir(name, root).name}.{AHEAD}.lock"


def _built_ahead(name: str, root: Path) -> Path | None:
    """A finished `build_ahead` copy of `name` whose run is alive."""
    for where in (SHM, root):
        for found in sorted(where.glob(f"{SCRATCH_PREFIX}*-{build_dir(name, root).name}-{AHEAD}-*")):
            owner = _owner(found)
            if owner is not None and _alive(owner) and (found / "build.json").is_file():
                return found
    return None


def _new_scratch(owner: int, name: str, root: Path, config, tag: str = "") -> Path:
    """An empty scratch directory for `name`'s bf16 copy where there is room, named for the process
    whose run owns it (`_owner` reads it back): an orphan once that process is gone."""
    where = SHM if _room(SHM, _bf16_bytes(config) * 1.05) else root
    where.mkdir(parents=True, exist_ok=True)
    _remove_orphans(where)
    return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{owner}-{build_dir(name, root).name}-{tag}", dir=where))


def _owner(scratch: Path) -> int | None:
    """The process a scratch copy was named for (`_new_scratch`)."""
    pid = scratch.name.removeprefix(SCRATCH_PREFIX).split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def write_replica(config, directory: Path, device: str, root: Path, name: str) -> dict:
    """Build the random-weight model on `device` and write it as a checkpoint `from_pretrained`
    reads: safetensors shards written straight from the model's tensors (transformers'
    `save_pretrained` took about two minutes for the 20B's 39 GB on an H100 host), its config,
    generation config and the widened tiny tokenizer. Returns the build record, also written
    to build.json with the seconds of each phase."""
    import torch
    from transformers import AutoTokenizer, GptOssForCausalLM

    from bench.models import tiny

    started = time.perf_counter()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        torch.manual_seed(0)
        with torch.device(device):
            model = GptOssForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    built = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    shards = _shards(model.state_dict())
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    _write_shards(shards, [directory / name for name in names])
    weight_map = {key: names[i] for i, shard in enumerate(shards) for key in shard}
    total = sum(map(_nbytes, shards))
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    config.architectures = [type(model).__name__]
    config.save_pretrained(directory)
    model.generation_config.save_pretrained(directory)
    written = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(tiny.tokenizer_dir(root))
    tokenizer.save_pretrained(directory)
    widen_tokenizer(directory / "tokenizer.json", config.vocab_size)
    meta = {"name": name, "parameters": sum(p.numel() for p in model.parameters()), "dtype": "bfloat16",
            "bytes": total, "build_s": round(built - started, 3), "write_s": round(written - built, 3),
            "where": str(directory.parent)}
    del model, shards
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    (directory / "build.json").write_text(json.dumps(meta, indent=2))
    return meta


SHM = Path("/dev/shm")
SCRATCH_PREFIX = "bench-replica-"
AHEAD = "ahead"  # in the name of a scratch copy `build_ahead` made
SHARD_BYTES = 2 * 1024**3
STAGING_BYTES = 512 * 1024**2
WRITERS = min(4, os.cpu_count() or 1)
# safetensors' names of the dtypes a state dict holds
SAFETENSORS_DTYPES = {"torch.bfloat16": "BF16", "torch.float16": "F16", "torch.float32": "F32",
                      "torch.float64": "F64", "torch.int64": "I64", "torch.int32": "I32", "torch.int16": "I16",
                      "torch.int8": "I8", "torch.uint8": "U8", "torch.bool": "BOOL",
                      "torch.float8_e4m3fn": "F8_E4M3", "torch.float8_e5m2": "F8_E5M2"}


def _write_shards(shards: list[dict], paths: list[Path], metadata: dict[str, str] | None = None) -> None:
    """Each shard as a safetensors file, its tensors' bytes staged through a reused (pinned, where
    they are on a GPU) buffer of at most STAGING_BYTES, one per writer.

    Measured on an H100 host for the 20B's 41.8 GB: `tensor.cpu()` into freshly allocated host
    memory copies at 1.45 GB/s (every page faulted in on first touch), so safetensors' `save_file`
    wrote the checkpoint in 32-41 s whatever the number of writers; into a pinned buffer the copy
    runs at 55 GB/s, and /dev/shm takes 16.6 GB/s from 8 writers: 5.3 s in all. `save_file` would
    copy each tensor once more into a new bytes object, so the file (an 8-byte header length, a
    JSON header, the data) is written here, from the buffer as it is."""
    import torch

    lanes = max(1, min(WRITERS, len(shards)))
    device = next((t.device for shard in shards for t in shard.values() if t.is_cuda), None)
    metadata = {"format": "pt"} if metadata is None else metadata

    def lane(first: int) -> None:
        mine = range(first, len(shards), lanes)  # one buffer per lane: a shard waits for the one before it
        size = max(1, min(STAGING_BYTES, max(_nbytes(shards[i]) for i in mine)))
        staging = torch.empty(size, dtype=torch.uint8, pin_memory=device is not None)
        stream = torch.cuda.Stream(device=device) if device is not None else None
        for i in mine:
            with open(paths[i], "wb") as out:
                out.write(_safetensors_header(shards[i], metadata))
                filled = 0
                for tensor in shards[i].values():
                    data = _as_bytes(tensor)
                    if stream is not None and data.is_cuda:
                        stream.wait_stream(torch.cuda.current_stream(device))  # `data` may be a new copy
                        data.record_stream(stream)
                    done = 0
                    while done < data.numel():
                        n = min(data.numel() - done, size - filled)
                        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                            staging[filled:filled + n].copy_(data[done:done + n], non_blocking=True)
                        filled, done = filled + n, done + n
                        if filled == size:
                            _flush(out, staging, filled, stream)
                            filled = 0
                _flush(out, staging, filled, stream)

    with ThreadPoolExecutor(lanes) as pool:
        list(pool.map(lane, range(lanes)))


def _flush(out, staging, filled: int, stream) -> None:
    if stream is not None:
        stream.synchronize()
    out.write(staging[:filled].numpy().data)


@contextlib.contextmanager
def staged_saves() -> Iterator[list[str]]:
    """transformers' `save_pretrained` writing its shards through `_write_shards` instead of
    safetensors' `save_file`, which copies a GPU tensor into fresh host memory and then once more
    into a bytes object (the 20B's 4-bit save took 15-18 s on H100 hosts, for 12.4 GB). Everything
    else `save_pretrained` does (which tensors, their names, the shards, the index, the config)
    stays its own. Yields the files written this way: none if the save went another way."""
    from transformers import modeling_utils

    written: list[str] = []
    original = modeling_utils.safe_save_file

    def save(tensors: dict, filename: str, metadata: dict[str, str] | None = None) -> None:
        if any(str(t.dtype) not in SAFETENSORS_DTYPES for t in tensors.values()):
            return original(tensors, filename, metadata=metadata)
        _write_shards([tensors], [Path(filename)], metadata)
        written.append(filename)

    modeling_utils.safe_save_file = save
    try:
        yield written
    finally:
        modeling_utils.safe_save_file = original


def _as_bytes(tensor):
    """The tensor's data as a flat uint8 view (a copy only where it was not contiguous)."""
    import torch

    return tensor.contiguous().reshape(-1).view(torch.uint8)


def _nbytes(shard: dict) -> int:
    return sum(t.nbytes for t in shard.values())


def _safetensors_header(shard: dict, metadata: dict[str, str] | None) -> bytes:
    """The header's length (8 bytes, little-endian) and the header: each tensor's dtype, shape and
    byte range, in the order written; padded so that the data starts 8-byte aligned."""
    header, offset = {}, 0
    for key, tensor in shard.items():
        size = tensor.nbytes
        header[key] = {"dtype": SAFETENSORS_DTYPES[str(tensor.dtype)], "shape": list(tensor.shape),
                       "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def _shards(state: dict) -> list[dict]:
    """The state dict in shards of at most SHARD_BYTES (a tensor larger than that alone), in order."""
    shards: list[dict] = [{}]
    size = 0
    seen: set[int] = set()
    for key, tensor in state.items():
        if tensor.data_ptr() in seen:  # a tied weight: written once, tied again on load
            continue
        seen.add(tensor.data_ptr())
        if shards[-1] and size + tensor.nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += tensor.nbytes
    return shards


def _bf16_bytes(config) -> int:
    """The checkpoint's size, from the model built on the meta device (no memory)."""
    import torch
    from transformers import GptOssForCausalLM

    with torch.device("meta"):
        model = GptOssForCausalLM(config)
    return sum(t.numel() for t in model.state_dict().values()) * 2


def _remove_orphans(where: Path) -> None:
    """Scratch copies whose process died before deleting them (killed by a timeout): tens of GB of
    memory while they stay in /dev/shm."""
    for stale in where.glob(f"{SCRATCH_PREFIX}*"):
        owner = _owner(stale)
        if owner is not None and not _alive(owner):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _room(path: Path, needed: float) -> bool:
    try:
        return shutil.disk_usage(path).free >= needed
    except OSError:
        return False


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
