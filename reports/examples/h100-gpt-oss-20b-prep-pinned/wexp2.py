"""The 20B replica's bf16 write: floors of tmpfs writing and of device-to-host copies, and a writer
that stages through reused pinned buffers."""
import json, os, shutil, struct, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import torch
from bench.models import replica

GB = 1e9
buf = torch.empty(2 * 1024**3, dtype=torch.uint8, pin_memory=True)
buf.fill_(1)
d = Path("/dev/shm/floor"); d.mkdir(exist_ok=True)
t = time.perf_counter()
for i in range(10):
    with open(d / f"f{i}", "wb") as f:
        f.write(buf.numpy().data)
s = time.perf_counter() - t; print(json.dumps({"tmpfs_write_1thread_GBps": round(10 * buf.numel() / GB / s, 2)}), flush=True)
shutil.rmtree(d); d.mkdir()
def w(i):
    with open(d / f"f{i}", "wb") as f:
        f.write(buf.numpy().data)
t = time.perf_counter()
with ThreadPoolExecutor(8) as p: list(p.map(w, range(16)))
s = time.perf_counter() - t; print(json.dumps({"tmpfs_write_8threads_GBps": round(16 * buf.numel() / GB / s, 2)}), flush=True)
shutil.rmtree(d)

g = torch.empty(2 * 1024**3, dtype=torch.uint8, device="cuda")
torch.cuda.synchronize(); t = time.perf_counter()
for _ in range(10): buf.copy_(g)
torch.cuda.synchronize(); s = time.perf_counter() - t; print(json.dumps({"d2h_pinned_GBps": round(10 * g.numel() / GB / s, 2)}), flush=True)
t = time.perf_counter()
for _ in range(5): x = g.cpu(); del x
s = time.perf_counter() - t; print(json.dumps({"d2h_pageable_fresh_GBps": round(5 * g.numel() / GB / s, 2)}), flush=True)
del g

# the replica's shards staged through pinned buffers, written raw
cfg = replica.model_config("gpt-oss-20b")
torch.manual_seed(0)
prev = torch.get_default_dtype(); torch.set_default_dtype(torch.bfloat16)
with torch.device("cuda:0"):
    from transformers import GptOssForCausalLM
    model = GptOssForCausalLM(cfg)
torch.set_default_dtype(prev)
shards = replica._shards(model.state_dict())
out = Path("/dev/shm/pinned"); out.mkdir(exist_ok=True)
W = 4
bufs = [torch.empty(max(sum(t.numel() * t.element_size() for t in s.values()) for s in shards), dtype=torch.uint8, pin_memory=True) for _ in range(W)]
streams = [torch.cuda.Stream() for _ in range(W)]
def write(i):
    b, stream = bufs[i % W], streams[i % W]
    header, off, views = {}, 0, []
    with torch.cuda.stream(stream):
        for k, t in shards[i].items():
            n = t.numel() * t.element_size()
            b[off:off + n].copy_(t.contiguous().view(-1).view(torch.uint8), non_blocking=True)
            header[k] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [off, off + n]}
            off += n
    stream.synchronize()
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode(); h += b" " * (-len(h) % 8)
    with open(out / f"s{i}.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h); f.write(b[:off].numpy().data)
torch.cuda.synchronize(); t = time.perf_counter()
with ThreadPoolExecutor(W) as p:  # buffer i % W reused only after shard i - W is written: one thread per buffer
    futures = []
    for k in range(W):
        futures.append(p.submit(lambda k=k: [write(i) for i in range(k, len(shards), W)]))
    [f.result() for f in futures]
s = time.perf_counter() - t
total = sum(t.numel() * t.element_size() for sh in shards for t in sh.values())
print(json.dumps({"pinned_raw_write_s": round(s, 2), "GB": round(total / GB, 1), "GBps": round(total / GB / s, 2)}), flush=True)
from safetensors import safe_open
with safe_open(str(out / "s0.safetensors"), "pt", device="cpu") as f:
    k = next(iter(f.keys())); assert torch.equal(f.get_tensor(k), shards[0][k].cpu())
print("pinned shard equal", flush=True)
shutil.rmtree(out)
