"""`bench merge`: runs made apart (per-GPU workers, shards of a cluster job, a Slurm array) become
one run: every record once, the manifests' GPUs and notes joined, the report rendered."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench.errors import BenchError
from bench.report import render_run
from bench.records.results import RESULTS_FILE, ResultsWriter, RunManifest, read_results


def merge(run_dirs: list[Path], output: Path, notes: list[str] | None = None) -> Path:
    if output.exists() and any(output.iterdir()):
        raise BenchError(f"-o {output}: exists and is not empty; choose a new directory")
    manifests = [RunManifest.read(d) for d in run_dirs]
    first = manifests[0]
    for m in manifests[1:]:
        if (m.model, m.profile) != (first.model, first.profile):
            raise BenchError(f"{m.run_id}: model/profile {m.model}/{m.profile} differ from {first.run_id}'s "
                             f"{first.model}/{first.profile}; merge runs of one configuration")
    parts = [read_results(d) for d in run_dirs]
    source = _part_of_each_case(parts)
    seen, records = set(), []
    for k, part in enumerate(parts):
        for r in part:
            key = (r.test_id, r.metric, r.gpu_uuid or r.gpu_index, r.backend)
            if source[(r.test_id, r.backend)] != k or key in seen:
                continue  # a case run twice (a resumed shard, a retry): one attempt's records only
            seen.add(key)
            records.append(r)
    gpus = list({g.get("uuid", str(g)): _with_calibration(g, m) for m in manifests for g in m.gpus}.values())
    merged = dataclasses.replace(
        first, run_id=output.name, started=min(m.started for m in manifests),
        finished=max((m.finished or m.started) for m in manifests), gpus=gpus,
        status="complete" if all(m.status == "complete" for m in manifests) else "incomplete",
        notes=[*first.notes, f"merged from {', '.join(m.run_id for m in manifests)}", *(notes or [])])
    output.mkdir(parents=True, exist_ok=True)
    merged.write(output)
    writer = ResultsWriter(output / RESULTS_FILE)
    for r in records:
        writer.write(dataclasses.replace(r, run_id=output.name))
    writer.close()
    render_run(output)
    return output


def _part_of_each_case(parts: list[list]) -> dict[tuple[str, str], int]:
    """The part whose records stand for each case: the first where it did not fail, else the first
    (a case retried after a failure that was not the code's, e.g. a server that could not start)."""
    failed = [{(r.test_id, r.backend) for r in part if r.metric == "case" and r.status in ("failed", "error")}
              for part in parts]
    chosen: dict[tuple[str, str], int] = {}
    for k, part in enumerate(parts):
        for r in part:
            case = (r.test_id, r.backend)
            if case not in chosen or (chosen[case] != k and case in failed[chosen[case]] and case not in failed[k]):
                chosen[case] = k
    return chosen


def _with_calibration(gpu: dict, manifest: RunManifest) -> dict:
    """A one-GPU run (a shard) measured its GPU's ceilings at run level; the merged run shows them per GPU."""
    if gpu.get("calibration") or len(manifest.gpus) != 1:
        return gpu
    return {**gpu, "calibration": manifest.calibration or {}}
