"""Where weights come from: the built-in tiny model, a replica of a published config, a hub name
or a local path. `resolve_model` turns the `--model` string into a `ModelSource` without loading
anything, so a bad name fails before any case runs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.models import replica, tiny
from bench.models.store import cache_root

HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSource:
    spec: str
    kind: str  # "tiny" | "replica" | "hub" | "path"
    loss_meaningful: bool
    why_no_loss: str = ""

    @property
    def replica_name(self) -> str:
        """A replica's name in the catalogue: `replica:gpt-oss-20b` -> `gpt-oss-20b`."""
        return self.spec.split(":", 1)[1]

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9.-]+", "-", self.spec).strip("-")[:60]


def resolve_model(spec: str) -> ModelSource:
    if spec == tiny.NAME:
        return ModelSource(spec, "tiny", True)
    if spec.startswith("replica:"):
        replica.config_path(spec.split(":", 1)[1])  # raises for an unknown replica
        return ModelSource(spec, "replica", False,
                           "random weights (replica): loss and output quality mean nothing, speed and memory do")
    if Path(spec).expanduser().is_dir():
        return ModelSource(str(Path(spec).expanduser().resolve()), "path", True)
    if HUB_NAME.match(spec):
        return ModelSource(spec, "hub", True)
    raise BenchError(f"--model {spec}: unknown model; use {tiny.NAME}, replica:<name> "
                     f"({', '.join(replica.available())}), a hub name like org/model, or an existing directory")


def local_weights(source: ModelSource, device: str) -> str:
    """What `from_pretrained` should be given: a built cache directory, a path, or a hub name.

    Building (tiny: about a minute on 2 CPU cores; replica: seconds on a GPU plus the save) happens
    here, on first use, never at import or collection time.
    """
    if source.kind == "tiny":
        return str(tiny.ensure_built(cache_root()))
    if source.kind == "replica":
        if not device.startswith("cuda"):
            raise BenchError(f"--model {source.spec} is built on a GPU (tens of GB in bf16); pass --gpu N")
        return str(replica.ensure_built(source.replica_name, cache_root(), device))
    return source.spec
