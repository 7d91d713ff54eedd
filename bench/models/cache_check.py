"""`bench doctor`: is this machine ready, and will this model load from the cache or download?

The seed lost hours to three cache failures: a broken HF cache that re-downloads for minutes,
files moved by hand that break the cache's symlinks, and a local path of unquantized weights that
is re-quantized on every load. Each is detected here, offline, with huggingface_hub's cache scan;
the suites run the same check before loading a hub model and fail with its reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError

WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True)
class Finding:
    level: str  # "ok" | "warn" | "error"
    message: str


def _quantized(config: dict) -> bool:
    return bool(config.get("quantization_config")) or "bnb" in json.dumps(config.get("quantization_config", {}))


def check_local_path(path: Path) -> list[Finding]:
    if not path.is_dir():
        return [Finding("error", f"{path}: no such directory")]
    config_file = path / "config.json"
    if not config_file.is_file():
        return [Finding("error", f"{path}: no config.json; not a model directory")]
    if not any(p.suffix in WEIGHT_SUFFIXES for p in path.iterdir()):
        return [Finding("error", f"{path}: no weight files (*.safetensors, *.bin)")]
    config = json.loads(config_file.read_text())
    if not _quantized(config):
        return [Finding("warn", f"{path}: unquantized weights: loading them in 4-bit re-quantizes on every load "
                                "(the seed's pitfall); save the quantized model once and load that, or load a "
                                "pre-quantized checkpoint by its hub name")]
    return [Finding("ok", f"{path}: pre-quantized weights ({config['quantization_config'].get('quant_method', '?')})")]


def check_hub_cache(repo_id: str, cache_dir: Path | None = None) -> list[Finding]:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.constants import HF_HUB_CACHE
    from huggingface_hub.file_download import repo_folder_name

    root = Path(cache_dir or HF_HUB_CACHE)
    repo_dir = root / repo_folder_name(repo_id=repo_id, repo_type="model")
    if not repo_dir.is_dir():
        return [Finding("error", f"{repo_id} is not in the HF cache at {root}: loading it would download it "
                                 f"(minutes); run `hf download {repo_id}` first")]
    findings: list[Finding] = []
    info = scan_cache_dir(root) if root.is_dir() else None
    for warning in (info.warnings if info else []):
        if str(repo_dir) in str(warning):
            findings.append(Finding("error", f"{repo_id}: {warning} (files moved by hand break the cache's "
                                             "symlinks; delete the snapshot and download again)"))
    incomplete = sorted((repo_dir / "blobs").glob("*.incomplete")) if (repo_dir / "blobs").is_dir() else []
    if incomplete:
        findings.append(Finding("error", f"{repo_id}: {len(incomplete)} incomplete download(s) in {repo_dir / 'blobs'}; "
                                         "the next load resumes downloading"))
    snapshots = sorted(p for p in (repo_dir / "snapshots").glob("*") if p.is_dir()) if (repo_dir / "snapshots").is_dir() else []
    if not snapshots:
        findings.append(Finding("error", f"{repo_id}: no snapshot in {repo_dir}"))
    for snap in snapshots:
        names = {p.name for p in snap.rglob("*")}
        missing = [n for n in ("config.json",) if n not in names]
        if not any(n.endswith(WEIGHT_SUFFIXES) for n in names):
            missing.append("weights")
        if missing:
            findings.append(Finding("error", f"{repo_id}: snapshot {snap.name[:12]} lacks {', '.join(missing)}"))
    if not (repo_dir / "refs" / "main").is_file():
        findings.append(Finding("warn", f"{repo_id}: no refs/main; loading by name offline may not find the snapshot"))
    if not any(f.level == "error" for f in findings):
        findings.append(Finding("ok", f"{repo_id}: complete snapshot in {root}"))
    return findings


def check_model(spec: str, cache_dir: Path | None = None) -> list[Finding]:
    from bench.models import resolve_model

    source = resolve_model(spec)
    if source.kind == "path":
        return check_local_path(Path(source.spec))
    if source.kind == "hub":
        return check_hub_cache(source.spec, cache_dir)
    return [Finding("ok", f"{spec}: built locally on first use (no download)")]


def require_loadable(spec: str) -> None:
    """The suites' guard before loading: an error finding stops the load with its reason."""
    errors = [f.message for f in check_model(spec) if f.level == "error"]
    if errors:
        raise BenchError("; ".join(errors))
