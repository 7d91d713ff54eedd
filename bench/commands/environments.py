"""The Python environment each side of `bench ab` (and each step of `bench bisect`) runs in.

What slows a fine-tuning job down is mostly an upgrade of its stack (Unsloth, transformers, trl,
peft, bitsandbytes, torch), so a side may be an environment as well as a git ref:

- pins: `unsloth==2026.10.9` (several: `unsloth==X,unsloth_zoo==Y`), installed over a copy of this
  environment;
- a requirements file (`*.txt`), installed the same way;
- an interpreter (`/path/to/venv/bin/python`): used as it is.

A side's environment is this one with the side's pins over it: a venv that sees this environment's
packages after its own, holding only the versions the pins change (uv resolves the pins against
this environment's versions and installs what differs). Torch and everything the sides share is
neither downloaded nor copied, and keeps its compiled bytecode. The environment is kept under the
cache root, named by what decides its contents (this interpreter, this environment's runtime
packages, the pins): a second `bench ab` with the same sides builds nothing. Where there is no network, `--find-links`
names a wheelhouse (pip's PIP_FIND_LINKS is passed on too).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError

PROJECT = "gpt-oss-bench"
ENVS_FOLDER = "envs"
READY = "bench-env.json"  # written last: an environment without it is incomplete and built again


@dataclass(frozen=True)
class EnvSpec:
    """What a side asks for: pins, a requirements file, or an interpreter (None: this environment)."""

    pins: tuple[str, ...] = ()
    requirements: Path | None = None
    interpreter: Path | None = None

    @property
    def label(self) -> str:
        if self.interpreter:
            return str(self.interpreter)
        if self.requirements:
            return str(self.requirements)
        return ",".join(self.pins) or "this environment"

    @property
    def builds(self) -> bool:
        return bool(self.pins or self.requirements)


def parse_side(text: str | None) -> EnvSpec:
    """--a / --b: pins (comma-separated requirements), a requirements .txt file, or a Python."""
    if not text:
        return EnvSpec()
    path = Path(text).expanduser()
    if path.suffix == ".txt":
        if not path.is_file():
            raise BenchError(f"{text}: no such requirements file")
        return EnvSpec(requirements=path.resolve())
    if path.is_file() and os.access(path, os.X_OK) and "python" in path.name:
        return EnvSpec(interpreter=path.absolute())
    from packaging.requirements import InvalidRequirement, Requirement

    pins = tuple(p.strip() for p in text.split(",") if p.strip())
    for pin in pins:
        try:
            Requirement(pin)
        except InvalidRequirement:
            raise BenchError(f"{pin}: not a requirement; give pins like unsloth==2026.10.9 (comma-separated), a "
                             "requirements .txt file, or a venv's bin/python") from None
    if not pins:
        raise BenchError(f"{text!r}: give pins like unsloth==2026.10.9, a requirements .txt file, or a venv's python")
    return EnvSpec(pins=pins)


def runtime_packages() -> dict[str, str]:
    """This environment's packages the harness needs at runtime: its requirements (with the extras
    installed here) and theirs, recursively, at the versions installed; the harness itself is left
    out (each side runs its own checkout's)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, str] = {}
    todo = [(PROJECT, frozenset(_installed_extras()))]
    while todo:
        name, extras = todo.pop()
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        key = canonicalize_name(dist.metadata["Name"])
        if key in found and not extras:
            continue
        if key != PROJECT:
            found[key] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                if canonicalize_name(req.name) not in found:
                    todo.append((req.name, frozenset(req.extras)))
    return dict(sorted(found.items()))


RUNTIME_EXTRAS = ("unsloth",)  # extras that change what a run measures (not test or cluster tooling)


def _installed_extras() -> set[str]:
    """The project's runtime extras whose packages are all installed here (unsloth on a GPU host)."""
    from packaging.requirements import Requirement

    try:
        dist = importlib.metadata.distribution(PROJECT)
    except importlib.metadata.PackageNotFoundError:
        return set()
    extras: dict[str, list[str]] = {}
    for text in dist.requires or []:
        req = Requirement(text)
        match = re.search(r'extra\s*==\s*"([^"]+)"', str(req.marker or ""))
        if match:
            extras.setdefault(match.group(1), []).append(req.name)
    return {extra for extra, names in extras.items() if extra in RUNTIME_EXTRAS and all(_installed(n) for n in names)}


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


@dataclass
class Environment:
    """A side's interpreter and the versions it resolved to."""

    python: Path
    spec: EnvSpec
    versions: dict[str, str] = field(default_factory=dict)
    built_s: float = 0.0  # seconds spent building it now (0: found built)


def uv() -> str:
    beside = Path(sys.executable).with_name("uv")  # installed into this venv, not on PATH
    found = shutil.which("uv") or (str(beside) if beside.exists() else None)
    if found is None:
        raise BenchError("environments are built with uv: pip install uv (or give a side as a venv's bin/python)")
    return found


def find_links(extra: list[str] | None = None) -> list[str]:
    """Wheelhouses uv may install from: --find-links, and pip's PIP_FIND_LINKS (space-separated)."""
    links = list(extra or []) + os.environ.get("PIP_FIND_LINKS", "").split()
    return [arg for link in dict.fromkeys(links) for arg in ("--find-links", link)]


def prepare(spec: EnvSpec, root: Path, links: list[str] | None = None, echo=print) -> Environment:
    """The side's environment: found built under `root`, or built now."""
    if spec.interpreter is not None:
        return Environment(spec.interpreter, spec, versions_of(spec.interpreter))
    if not spec.builds:  # the packages a built side would hold, at this environment's versions
        return Environment(Path(sys.executable), spec, runtime_packages())
    base = runtime_packages()
    key = hashlib.sha256(json.dumps({"python": sys.version, "base": base, "pins": spec.pins,
                                     "requirements": spec.requirements.read_text() if spec.requirements else None},
                                    sort_keys=True).encode()).hexdigest()[:16]
    target = root / ENVS_FOLDER / key
    python = target / "bin" / "python"
    if (target / READY).is_file():
        return Environment(python, spec, json.loads((target / READY).read_text())["versions"])
    started = time.monotonic()
    echo(f"building the environment for {spec.label} (uv, once; kept in {target})")
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    site = _build(spec, target, base, find_links(links))
    versions = dict(sorted({**base, **_own_versions(site)}.items()))
    (target / READY).write_text(json.dumps({"spec": spec.label, "versions": versions}, indent=1))
    return Environment(python, spec, versions, round(time.monotonic() - started, 1))


def _build(spec: EnvSpec, target: Path, base: dict[str, str], wheels: list[str]) -> Path:
    """A venv that sees this environment's packages after its own (a path file), holding only what
    the side's pins change: uv installs the pins with their requirements, at this environment's
    versions wherever those satisfy them, and every copy identical to this environment's is then
    removed again, so torch and the rest stay this environment's, with their compiled bytecode."""
    import sysconfig

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    python = target / "bin" / "python"
    _uv(["venv", "--quiet", "--python", sys.executable, str(target)])
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    here = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "_bench_base_environment.pth").write_text("".join(f"{path}\n" for path in here))
    pinned = {canonicalize_name(Requirement(p).name) for p in spec.pins}
    constraints = target / "base-constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in base.items() if n not in pinned))
    wanted = list(spec.pins) or ["-r", str(spec.requirements)]
    install = ["pip", "install", "--quiet", "--python", str(python), *wheels, *wanted]
    try:
        _uv([*install, "--constraint", str(constraints)])
    except BenchError:  # the pins need other versions of what this environment has: let uv choose them
        _uv(install)
    installed = _own_versions(site)
    same = sorted(n for n, v in installed.items() if base.get(n) == v)
    if same:
        _uv(["pip", "uninstall", "--quiet", "--python", str(python), *same])
    subprocess.run([str(python), "-m", "compileall", "-q", str(site)], capture_output=True)
    return site


def _own_versions(site: Path) -> dict[str, str]:
    """The distributions installed in one site-packages directory itself, by canonical name."""
    from packaging.utils import canonicalize_name

    return {canonicalize_name(d.metadata["Name"]): d.version
            for d in importlib.metadata.distributions(path=[str(site)]) if d.metadata["Name"]}


def _uv(args: list[str]) -> None:
    proc = subprocess.run([uv(), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise BenchError(f"uv {' '.join(args[:2])} failed: {tail}")


def versions_of(python: Path) -> dict[str, str]:
    """Every distribution an interpreter sees, by canonical name: the first on its path, as import does."""
    code = ("import importlib.metadata as m, json, re\n"
            "seen = {}\n"
            "for d in m.distributions():\n"
            "    if d.metadata['Name']:\n"
            "        seen.setdefault(re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(), d.version)\n"
            "print(json.dumps(seen))")
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"{python}: cannot run it to read its packages: {proc.stderr.strip()[-300:]}")
    return dict(sorted(json.loads(proc.stdout).items()))


def version_diff(a: dict[str, str], b: dict[str, str]) -> list[tuple[str, str | None, str | None]]:
    """(package, version in A, version in B) for every package the two sides resolve differently."""
    return [(name, a.get(name), b.get(name)) for name in sorted(set(a) | set(b))
            if a.get(name) != b.get(name) and name != PROJECT]


def sides_of(refs: tuple[str, str], environments: dict[str, Environment], repo: Path):
    """What each side ran, for the comparison's first lines: git ref, commit and environment, and
    the packages the two resolved to different versions."""
    from bench.report.comparison import Version, Versions

    def commit(ref: str) -> str | None:
        if ref == ".":
            return None
        proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=repo,
                              capture_output=True, text=True)
        return proc.stdout.strip() or None

    (a, env_a), (b, env_b) = zip(refs, (environments["A"], environments["B"]))
    return Versions(Version("A", a, commit(a), env_a.spec.label), Version("B", b, commit(b), env_b.spec.label),
                    tuple(version_diff(env_a.versions, env_b.versions)))
