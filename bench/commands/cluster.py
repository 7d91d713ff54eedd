"""`bench cluster run`: the suites sharded over a Ray cluster, one task per GPU, one run at the end.

Each task reserves one GPU (`num_gpus=1`; Ray pins the task to it), runs `pytest ... --shard i/n`
on its node and streams every record back the moment the shard writes it; the driver appends them
to a local copy of the shard (so a driver that dies keeps what arrived) and finally joins the
shards with `bench merge`. Without `--address`, Ray starts a cluster in this process; its GPU count
can be declared (`--local-gpus`), which is how the tests run it on a machine without a GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.telemetry.environment import redact
from bench.errors import BenchError
from bench.records.results import RESULTS_FILE, Measurement, ResultsWriter

POLL_S = 0.5
TAIL_CHARS = 4000


@dataclass
class ShardOutcome:
    index: int
    returncode: int | None
    output: str
    records: int


def _read_new_lines(path: Path, offset: int) -> tuple[list[str], int]:
    """Complete lines written since `offset` (a line being written stays for the next poll)."""
    if not path.is_file():
        return [], offset
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n") + 1
    return [line for line in data[:end].decode("utf-8").splitlines() if line.strip()], offset + end


def run_shard(index: int, count: int, pytest_args: list[str], cwd: str):
    """The body of one Ray task (a generator: Ray streams what it yields back to the driver)."""
    import ray

    from bench.telemetry.devices import nvml_gpus

    gpu_ids = ray.get_gpu_ids()
    # Ray pins the task with CUDA_VISIBLE_DEVICES; the harness pins by nvidia-smi index, so it is
    # given the index Ray assigned. Declared GPUs without a driver (a test cluster) run on the CPU.
    gpu = str(int(gpu_ids[0])) if gpu_ids and nvml_gpus() else "cpu"
    root = Path(tempfile.mkdtemp(prefix=f"bench-shard-{index}-"))
    run_dir = root / f"shard-{index}"
    cmd = [sys.executable, "-m", "pytest", *pytest_args, "--shard", f"{index}/{count}", "--gpu", gpu,
           "--report-dir", str(root), "--run-id", run_dir.name, "-p", "no:cacheprovider"]
    with tempfile.TemporaryFile("w+", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True)
        offset, manifest = 0, None
        while True:
            done = proc.poll() is not None
            if (run_dir / "manifest.json").is_file():  # sent when it appears and when it changes, so that
                text = (run_dir / "manifest.json").read_text()  # a shard that dies still merges
                if text != manifest:
                    manifest = text
                    yield ("manifest", manifest)
            lines, offset = _read_new_lines(run_dir / RESULTS_FILE, offset)
            for line in lines:
                yield ("record", line)
            if done:
                break
            time.sleep(POLL_S)
        log.seek(0)
        output = log.read()
    yield ("exit", proc.returncode, redact(output[-TAIL_CHARS:]))


def _collect(generator, index: int, shard_dir: Path, outcomes: list, errors: list) -> None:
    """Driver side of one shard: write each streamed record as it arrives."""
    import ray

    shard_dir.mkdir(parents=True, exist_ok=True)
    writer = ResultsWriter(shard_dir / RESULTS_FILE)
    count, code, output = 0, None, ""
    try:
        for ref in generator:
            kind, *payload = ray.get(ref)
            if kind == "record":
                writer.write(Measurement.from_dict(json.loads(payload[0])))
                count += 1
            elif kind == "manifest" and payload[0]:
                (shard_dir / "manifest.json").write_text(payload[0])
            elif kind == "exit":
                code, output = payload
    except Exception as exc:  # a task that died (node lost, out of memory): keep what arrived
        errors.append(f"shard {index}: {type(exc).__name__}: {exc}")
    finally:
        writer.close()
        outcomes.append(ShardOutcome(index, code, output, count))


def cluster_run(pytest_args: list[str], report_dir: Path, run_id: str | None = None, address: str | None = None,
                shards: int | None = None, local_gpus: int | None = None, ship_code: bool = False,
                echo=print) -> tuple[Path, list[ShardOutcome]]:
    try:
        import ray
    except ImportError:
        raise BenchError("bench cluster needs Ray: pip install 'gpt-oss-bench[cluster]' (or ray)") from None
    if address and local_gpus is not None:
        raise BenchError("--local-gpus declares the GPUs of a cluster started here; drop it with --address")
    run_id = run_id or time.strftime("%Y%m%d-%H%M%S-cluster")
    output = Path(report_dir) / run_id
    if output.exists() and any(output.iterdir()):
        raise BenchError(f"--run-id {run_id}: {output} exists and is not empty; choose another run id")
    runtime_env = {"working_dir": ".", "excludes": [".git", ".venv", "reports", ".cache"]} if ship_code else None
    init = {"address": address} if address else {"num_gpus": local_gpus, "include_dashboard": False}
    ray.init(log_to_driver=False, runtime_env=runtime_env, **init)
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        count = shards or gpus
        if count < 1:
            raise BenchError("the Ray cluster has no GPUs: pass --shards N to run N CPU shards")
        echo(f"{count} shards on a Ray cluster with {gpus} GPUs")
        task = ray.remote(run_shard).options(num_gpus=1 if gpus else 0, num_cpus=1)
        cwd = "." if ship_code else os.getcwd()
        shard_root = Path(report_dir) / f"{run_id}.shards"
        outcomes: list[ShardOutcome] = []
        errors: list[str] = []
        threads = [threading.Thread(target=_collect, args=(task.remote(i, count, pytest_args, cwd), i,
                                                           shard_root / f"shard-{i}", outcomes, errors))
                   for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        ray.shutdown()
    for message in errors:
        echo(message)
    shard_dirs = [shard_root / f"shard-{o.index}" for o in sorted(outcomes, key=lambda o: o.index)
                  if (shard_root / f"shard-{o.index}" / "manifest.json").is_file()]
    if not shard_dirs:
        tail = next((o.output for o in outcomes if o.output), "")
        raise BenchError(f"no shard produced a run; the first shard's output ends:\n{tail[-1500:]}")
    from bench.commands.merge import merge

    merge(shard_dirs, output, notes=[f"run by `bench cluster run` as {count} shards on a Ray cluster "
                                     f"({'at ' + address if address else 'started locally'})"])
    return output, sorted(outcomes, key=lambda o: o.index)
