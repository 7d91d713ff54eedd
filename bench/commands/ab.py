"""`bench ab REF_A REF_B [-- pytest args]`: both versions measured on this machine in the same time
window, in alternating rounds, and compared with the rounds paired.

Two runs made at different times differ by more than their own samples show: whole runs of the
tiny model move 5-15% on a 2-core machine, a GPU's clocks and neighbours change by the hour. So,
as `asv continuous` and Chromium's pinpoint do, both versions run here, one after the other, round
after round (A B, B A, A B, ...: the order alternates so that a steady trend does not favour one
side), and each round's A and B form a pair. The comparison engine then judges the paired rounds,
pooling each metric's paired variance over its cases (`compare_rounds`).

Each git ref is checked out once into a worktree (`.` is the working tree as it is, uncommitted
changes included), and its own `bench` package is imported from there; the built models' cache is
shared. A side may also be an environment (`--a unsloth==X --b unsloth==Y`, a requirements file, an
interpreter): its rounds run in that environment's Python (`bench.commands.environments`), built
once with uv and kept.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.records.results import RESULTS_FILE, Measurement, read_results
from bench.telemetry.environment import redact

# Five, from measurement (2-core CPU, docs/measurements/gate-error-rates.md): a 25% slowdown
# failed every window of five rounds and about three in four of three; no unchanged window of either
# size raised an alarm. Ten runs a comparison instead of six.
DEFAULT_ROUNDS = 5
# Up to four times as many, in blocks of --rounds, while the rounds so far point at a regression they
# cannot call (`compare.worth_more_rounds`). On the 2-core CPU (docs/measurements/gate-error-rates.md)
# unchanged code stopped after 6 rounds on average; a true 10% slowdown was caught in 22 of 22 windows
# of up to 20 rounds of two chains (8-14 rounds used on average), in 27 of 32 windows of up to 15.
MAX_ROUNDS_FACTOR = 4
# With autoload off (the installed entry point names this checkout's plugin, not a ref's), the
# plugins a suites run needs are named explicitly.
PLUGINS = ("pytest_benchmark.plugin", "xdist.plugin", "pytest_timeout")
OUTPUT_FILE = "pytest-output.log"  # a round's whole terminal output, kept in its run directory
RESERVED = ("--report-dir", "--run-id", "--compare", "--resume")


@dataclass(frozen=True)
class Checkout:
    """One side's code: a git ref checked out (or the working tree) and the Python that runs it."""

    label: str  # "A" or "B"
    ref: str
    commit: str | None  # None: the working tree as it is
    root: Path
    python: Path = Path(sys.executable)


def _git(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"git {' '.join(args)}: {proc.stderr.strip() or 'failed'}")
    return proc.stdout.strip()


def _resolve(ref: str, repo: Path) -> str | None:
    if ref == ".":
        return None
    try:
        return _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=repo)
    except BenchError:
        raise BenchError(f"{ref}: not a commit of {repo}; give a branch, tag or commit (or . for the working tree)") from None


def checkout(refs: tuple[str, str], repo: Path, into: Path) -> list[Checkout]:
    """One worktree per distinct commit (an A/A of one commit shares it); `.` needs no git."""
    if set(refs) == {"."}:
        return [Checkout(label, ".", None, repo.resolve()) for label in "AB"]
    try:
        top = Path(_git("rev-parse", "--show-toplevel", cwd=repo))
    except BenchError:
        raise BenchError(f"{repo}: not a git repository; run bench ab from the project's checkout") from None
    sides, made = [], {}
    for label, ref in zip("AB", refs):
        commit = _resolve(ref, top)
        if commit is None:
            root = top
        elif commit in made:
            root = made[commit]
        else:
            root = into / f"worktree-{commit[:12]}"
            if not root.exists():
                _git("worktree", "add", "--detach", str(root), commit, cwd=top)
            made[commit] = root
        sides.append(Checkout(label, ref, commit, root))
    return sides


def plugin_module(root: Path) -> str:
    """The harness plugin of a checkout, wherever that version keeps it."""
    return "bench.harness.plugin" if (root / "bench" / "harness" / "plugin.py").is_file() else "bench.plugin"


def run_side(side: Checkout, pytest_args: list[str], runs_dir: Path, run_id: str, env: dict) -> Path:
    # the round runs in its ref's worktree: a relative directory would be resolved there
    runs_dir = runs_dir.resolve()
    cmd = [str(side.python), "-m", "pytest", *pytest_args, "-p", plugin_module(side.root),
           *[arg for p in PLUGINS for arg in ("-p", p)], "--report-dir", str(runs_dir), "--run-id", run_id,
           "-q", "-p", "no:cacheprovider"]
    env = {**env, "PYTHONPATH": os.pathsep.join([str(side.root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run(cmd, cwd=side.root, env=env, capture_output=True, text=True)
    run_dir = runs_dir / run_id
    output = redact(proc.stdout + proc.stderr)
    if run_dir.is_dir():  # the whole output beside the run: a crash's cause is at its top, not its end
        (run_dir / OUTPUT_FILE).write_text(output, encoding="utf-8")
    if proc.returncode not in (0, 1) or not (run_dir / RESULTS_FILE).is_file():
        lines = output.strip().splitlines()
        # a fatal error's first lines: what it was, the crashing thread and its innermost frame
        top = next((i for i, line in enumerate(lines) if line.startswith("Fatal Python error")), None)
        fatal = lines[top:top + 4] + ["..."] if top is not None else []
        what = "before it finished" if (run_dir / RESULTS_FILE).is_file() else "without results"
        where = f" (all of it: {run_dir / OUTPUT_FILE})" if run_dir.is_dir() else ""
        raise BenchError(f"round {run_id} ({side.ref}) exited {proc.returncode} {what}{where}; "
                         f"its output ends:\n" + "\n".join(fatal + lines[-12:]))
    return run_dir


def max_rounds_of(rounds: int, max_rounds: int | None) -> int:
    """--max-rounds, or its default: MAX_ROUNDS_FACTOR times --rounds (equal to it: a fixed number of rounds)."""
    if max_rounds is None:
        return rounds * MAX_ROUNDS_FACTOR
    if max_rounds < rounds:
        raise BenchError(f"--max-rounds {max_rounds}: give at least --rounds ({rounds}); equal to it, "
                         "exactly that many rounds are run")
    return max_rounds


def order(i: int) -> tuple[str, str]:
    """Round i's pair: A B, B A, A B, ..., alternating which side goes first."""
    return ("A", "B") if i % 2 == 0 else ("B", "A")


Records = list[list[Measurement]]


def run_ab(refs: tuple[str, str], pytest_args: list[str], out: Path, rounds: int = DEFAULT_ROUNDS,
           env_for: dict[str, dict] | None = None, echo=print, looks: list[int] | None = None,
           enough: Callable[[Records, Records], bool] | None = None,
           pythons: dict[str, Path] | None = None) -> tuple[Records, Records]:
    """Run both sides in alternating rounds; their records, round by round. `looks`: the round
    counts after which `enough(a, b)` is asked whether to stop (the last one ends the rounds;
    default: `rounds` rounds). `env_for` adds environment variables per side (the error-rate
    measurement slows one side down with it); `pythons` gives a side the interpreter of its own
    environment (`bench.commands.environments`)."""
    if rounds < 2:
        raise BenchError(f"--rounds {rounds}: give 2 or more (one round has no spread to judge by)")
    taken = [a for a in pytest_args if a.split("=", 1)[0] in RESERVED]
    if taken:
        raise BenchError(f"{taken[0]}: bench ab sets it for each run; leave it out of the pytest arguments")
    looks = looks or [rounds]
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    sides = {s.label: dataclasses.replace(s, python=(pythons or {}).get(s.label, s.python))
             for s in checkout(refs, Path.cwd(), out)}
    records: dict[str, Records] = {"A": [], "B": []}
    for i in range(looks[-1]):
        for label in order(i):
            side = sides[label]
            started = time.monotonic()
            run_dir = run_side(side, pytest_args, out / "runs", f"{label}-{i}",
                               {**os.environ, **(env_for or {}).get(label, {})})
            records[label].append(read_results(run_dir))
            echo(f"round {i + 1}/{looks[-1]} {label} ({side.ref}): {time.monotonic() - started:.0f} s, {run_dir}")
        if i + 1 in looks[:-1] and enough is not None and enough(records["A"], records["B"]):
            echo(f"stopped after {i + 1} rounds: the comparison is decided")
            break
    return records["A"], records["B"]


def remove_worktrees(out: Path) -> None:
    for tree in out.glob("worktree-*"):
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], capture_output=True)
        shutil.rmtree(tree, ignore_errors=True)
