"""One protocol, several engines, looked up by name.

A backend module imports its heavy library only when it is used, so the CLI, the report and the
harness's own tests work on a machine without CUDA or unsloth.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.models import ModelSource

# The seed's seven LoRA targets. GPT-OSS has no gate/up/down nn.Linear: its experts are one fused
# GptOssExperts module holding 3-D parameters gate_up_proj (gate and up interleaved) and down_proj.
# peft reaches those through `target_parameters` (LoRA on an nn.Parameter), so "gate" and "up" are
# covered by one adapter on gate_up_proj, as Unsloth does for this model.
ATTENTION_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
EXPERT_PARAMETERS = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")
SEVEN_TARGETS = ATTENTION_TARGETS + ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    r: int
    dropout: float = 0.0
    # LoRA's A matrices start random: seeded, so an adapter does not depend on how much randomness
    # the cases before it drew (Unsloth's random_state is the same idea).
    seed: int = 3407

    @property
    def alpha(self) -> int:
        """The seed's rule: alpha = 2 r."""
        return 2 * self.r


@dataclass(frozen=True)
class TrainSettings:
    batch_size: int
    grad_accum: int
    max_steps: int
    learning_rate: float
    max_seq_length: int
    output_dir: Path
    save_steps: int | None = None
    warmup_steps: int = 2
    seed: int = 0


@dataclass
class Loaded:
    """A model in memory with what produced it; `info` says what the backend actually ran."""

    model: Any
    tokenizer: Any
    source: "ModelSource"
    info: dict = field(default_factory=dict)


class Backend(Protocol):
    name: str
    device: str

    loads: int

    def prepare(self, source: "ModelSource") -> str: ...
    def prepared(self, source: "ModelSource") -> bool: ...
    def servable(self, source: "ModelSource") -> str: ...
    def build_ahead(self, source: "ModelSource") -> tuple[Callable[..., None], tuple] | None: ...
    def load(self, source: "ModelSource") -> Loaded: ...
    def add_lora(self, loaded: Loaded, lora: LoraSettings) -> Loaded: ...
    def trainer(self, loaded: Loaded, dataset: Any, settings: TrainSettings, callbacks: list) -> Any: ...
    def for_inference(self, loaded: Loaded) -> None: ...
    def generate(self, loaded: Loaded, prompts: list[str], max_new_tokens: int,
                 logits_processor: list | None = None) -> list[list[int]]: ...
    def save_adapter(self, loaded: Loaded, path: Path) -> None: ...
    def load_adapter(self, base: Loaded, path: Path) -> Loaded: ...
    def unload(self, loaded: Loaded) -> None: ...


REGISTRY: dict[str, str] = {
    "hf": "bench.backends.hf:HFBackend",
    "unsloth": "bench.backends.unsloth:UnslothBackend",
}


def unsloth_available() -> bool:
    return importlib.util.find_spec("unsloth") is not None


def resolve_backend_name(name: str, cuda: bool, tiny: bool = False) -> str:
    """`auto` means unsloth where CUDA is there and unsloth is installed, hf otherwise, and hf for
    the built-in tiny model: on it Unsloth's one-off compilation is the whole run (measured on an
    H100: 62 s for the first training step, 11 s for the first generate, 3.9 s per warm load of a
    2-million-parameter model), so the smoke run would time Unsloth's start-up, not the pipeline.
    `--backend unsloth` runs it anyway."""
    if name == "auto":
        return "unsloth" if cuda and unsloth_available() and not tiny else "hf"
    if name not in REGISTRY:
        raise BenchError(f"--backend {name}: unknown backend; choose auto, {', '.join(REGISTRY)}")
    if name == "unsloth" and not cuda:
        raise BenchError("--backend unsloth needs a CUDA GPU; pass --gpu N on a GPU machine or use --backend hf")
    if name == "unsloth" and not unsloth_available():
        raise BenchError("--backend unsloth: unsloth is not installed; pip install '.[unsloth]' or use --backend hf")
    return name


PRECISIONS = {"auto": None, "4bit": True, "bf16": False}  # --precision: load_in_4bit (None: the engine's default)


def engine_options(name: str, precision: str, max_seq_length: int) -> dict[str, Any]:
    """A backend's constructor options for a run's --precision and its profile's sequence length."""
    options: dict[str, Any] = {"load_in_4bit": PRECISIONS[precision]}
    if name == "unsloth":
        options["max_seq_length"] = max_seq_length
    return options


def get_backend(name: str, device: str, **options: Any) -> Backend:
    module_name, class_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)(device=device, **options)


# What each engine imports before its first case, in this order (unsloth patches the others, so it
# comes first): an isolated child imports these while it waits for its turn. transformers and trl
# import their trainers lazily, at a case's first use (1 s on the 2-core CPU machine, several on a
# GPU host): here, so that no case pays it.
_LAZY = ("transformers.trainer", "trl.trainer.sft_trainer")
LIBRARIES: dict[str, tuple[str, ...]] = {
    "hf": ("torch", "transformers", "peft", "trl", *_LAZY),
    "unsloth": ("unsloth", "torch", "transformers", "peft", "trl", *_LAZY),
}
# What loading and generating need of an engine, where that is less than its whole: transformers'
# model stack and GPT-OSS's modeling, which `import transformers` leaves lazy and a first load would
# otherwise import inside its timing (1,500 modules). peft and trl are not in it: on an H100 host
# they cost 16 s of the engine's 23 s import (peft imports bitsandbytes, torchao, the stack itself).
LOAD_AND_GENERATE: dict[str, tuple[str, ...]] = {
    "hf": ("torch", "transformers", "transformers.models.auto.modeling_auto",
           "transformers.models.auto.tokenization_auto", "transformers.models.gpt_oss.modeling_gpt_oss",
           "transformers.generation.utils"),
}
LOAD_AND_GENERATE_SUITES = frozenset({"load", "infer"})
# What a user's own script imports before its first load: `from unsloth import FastLanguageModel`,
# or `from transformers import AutoModelForCausalLM, AutoTokenizer`. A process that times a cold load
# imports this and nothing more first, so that the cold load pays what a user's first load pays: the
# modules the engine imports on first use (1,435 of them for transformers' model stack, 1.8 s of a
# tiny model's 2.0 s cold load on the 2-core CPU machine). Importing them ahead made the cold load
# of the 20B replica read 3.4 s where a plain script took 8.3-8.8 s on the same H100.
USER_IMPORTS: dict[str, tuple[str, ...]] = {"hf": ("torch", "transformers"), "unsloth": ("unsloth",)}

# What a fork server may import for an engine's children (bench.telemetry.processes): not unsloth,
# which initializes CUDA when imported (a child forked after that cannot use CUDA), nor what it
# patches, which must be imported after it.
PRELOADABLE: dict[str, tuple[str, ...]] = {"hf": LIBRARIES["hf"], "unsloth": ("torch",)}


def needs_only_load_and_generate(name: str, suites: set[str] | frozenset[str]) -> bool:
    """Whether a process running these suites' cases with this engine can do with its
    load-and-generate libraries (an isolated child of the load and inference suites)."""
    return name in LOAD_AND_GENERATE and bool(suites) and suites <= LOAD_AND_GENERATE_SUITES


def times_a_cold_load(suites: set[str] | frozenset[str]) -> bool:
    """Whether a process running these suites' cases times a cold load (the load suite runs first)."""
    return "load" in suites


def times_generation(suites: set[str] | frozenset[str]) -> bool:
    """Whether a process running these suites' cases times generation, which is host-bound (a
    kernel launch at a time from one Python thread): it decodes as fast as its process is left
    alone, so the harness starts it fresh and runs it with no child beside it (docs/fidelity.md)."""
    return "infer" in suites


def preloads_for(name: str) -> bool:
    """Whether this engine's children would come from a fork server that imported its libraries:
    whatever the server imports, it freezes (out of the garbage collector's reach), and a user's
    script walks those objects in every full collection its load triggers; transformers' server
    also imports more than a user's script would before its first load (its trainer pulls in the
    model stack). A child timing a cold load or generation starts fresh instead."""
    return bool(PRELOADABLE.get(name))


def import_libraries(name: str, suites: set[str] | frozenset[str] = frozenset()) -> None:
    """The engine's libraries for the cases of `suites` (every suite's when empty): only what a
    user's script imports where a cold load is timed; the rest comes with the first use, as it would."""
    if times_a_cold_load(suites):
        wanted = USER_IMPORTS.get(name, ())
    elif needs_only_load_and_generate(name, suites):
        wanted = LOAD_AND_GENERATE[name]
    else:
        wanted = LIBRARIES.get(name, ())
    for module in wanted:
        importlib.import_module(module)
    importlib.import_module(REGISTRY[name].split(":")[0])
