"""Whether a run's generation had its GPU to itself: pure reading of what each inference case
recorded of its process as it began to generate (`bench.fidelity.plain.process_context`).

A decode at small batches is host-bound, a kernel launch at a time, and a user's script usually has
its GPU to itself: a rate measured beside another process holding a CUDA context there (another job,
or with isolation the run's own child) is not that situation, so the run says where it happened. On
an H100 the run's own waiting child turned out not to be what kept the harness's decode below a plain
script's (0.79-0.82 with it, 0.825 without; docs/fidelity.md); a stranger's process is still named."""

from __future__ import annotations

from bench.records.results import Measurement, describe_params

GENERATION_METRIC = "decode_tok_s"


def shared_gpu_note(records: list[Measurement]) -> str | None:
    """One line naming the inference cases that began to generate beside other processes on their
    GPU, how many, and how many of those were its siblings (started by the same parent: with
    isolation, the run's own other children); None when every case had its GPU to itself or NVML
    could not say."""
    shared = []
    for r in records:
        context = (r.extra or {}).get("context") or {}
        others = context.get("other_gpu_processes")
        if r.metric != GENERATION_METRIC or not others:
            continue
        siblings = context.get("other_gpu_siblings")
        own = f", {siblings} of them its siblings" if siblings else ""
        gpu = f"GPU {r.gpu_index}" if r.gpu_index is not None else "its GPU"
        shared.append(f"{describe_params(r.params)} ({others} on {gpu}{own})")
    if not shared:
        return None
    return ("generation shared its GPU: other processes held a CUDA context there as these cases began to "
            f"generate: {'; '.join(shared)}. A host-bound decode beside another process may read lower than "
            "on a GPU of its own: read these rates as a lower bound, or run again with the GPU to itself")
