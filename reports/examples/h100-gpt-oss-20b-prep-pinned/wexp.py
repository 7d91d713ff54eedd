"""Where the 20B replica's bf16 write goes: writers and the safetensors serializer."""
import json, shutil, struct, sys, time
from pathlib import Path
import safetensors.torch as st
from bench.models import replica
from bench.models.store import cache_root

orig = st.save_file
spent = {"save": 0.0}


def raw(tensors, filename, metadata=None):
    header, off = {}, 0
    for k, t in tensors.items():
        n = t.numel() * t.element_size()
        header[k] = {"dtype": "BF16" if str(t.dtype) == "torch.bfloat16" else {"torch.float32": "F32"}[str(t.dtype)],
                     "shape": list(t.shape), "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = metadata or {}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(filename, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for t in tensors.values():
            f.write(t.contiguous().view(__import__("torch").uint8).numpy().data)


cfg = replica.model_config("gpt-oss-20b")
root = cache_root()
for writers, how in [(4, "safetensors"), (8, "safetensors"), (8, "raw"), (12, "raw")]:
    replica.WRITERS = writers
    st.save_file = raw if how == "raw" else orig
    d = Path(f"/dev/shm/exp-{writers}-{how}")
    t = time.perf_counter()
    meta = replica.write_replica(cfg, d, "cuda:0", root, "gpt-oss-20b")
    print(json.dumps({"writers": writers, "how": how, "build_s": meta["build_s"], "write_s": meta["write_s"],
                      "total_s": round(time.perf_counter() - t, 2), "gb": round(meta["bytes"] / 1e9, 1)}), flush=True)
    if how == "raw":
        from safetensors import safe_open
        with safe_open(str(next(d.glob("*.safetensors"))), "pt") as f:
            k = next(iter(f.keys())); f.get_tensor(k)
        print("raw shard readable", flush=True)
    shutil.rmtree(d)
