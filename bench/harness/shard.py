"""`--shard i/n`: the part of a session's cases one process runs, for runs spread by hand (a Slurm
array, several machines) or by a cluster engine (`bench cluster run`), joined by `bench merge`.

Cases that share a model loaded once per module stay in one shard (the same groups the per-GPU
workers use), and groups go to the least-loaded shard, largest first: deterministic, so n
processes that collect the same cases split them without talking to each other.
"""

from __future__ import annotations

from bench.errors import BenchError


def parse_shard(spec: str) -> tuple[int, int]:
    index, sep, count = spec.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit() or int(count) < 1:
        raise BenchError(f"--shard {spec}: write it as i/n with 0 <= i < n, e.g. --shard 0/4")
    i, n = int(index), int(count)
    if i >= n:
        raise BenchError(f"--shard {spec}: shard indices run from 0 to {n - 1}")
    return i, n


def assign(groups: list[str], count: int) -> dict[str, int]:
    """Shard of each group (a list with one entry per case, in collection order)."""
    sizes: dict[str, int] = {}
    for group in groups:
        sizes[group] = sizes.get(group, 0) + 1
    load = [0] * count
    shard_of: dict[str, int] = {}
    for group in sorted(sizes, key=lambda g: (-sizes[g], groups.index(g))):
        target = min(range(count), key=lambda k: (load[k], k))
        shard_of[group] = target
        load[target] += sizes[group]
    return shard_of
