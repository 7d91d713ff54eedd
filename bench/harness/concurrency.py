"""Training and serving at the same time: the seed's "train on GPU 0 while serving on GPU 1".

Each side runs in its own process (forked from the session's fork server), pinned to its device
before CUDA starts (two engines in one process would share its interpreter lock and allocator).
The parent drives both through pipes: each side is measured alone, then both run together,
training for a fixed number of optimizer steps and serving batches back to back until training
ends. Only the serving rounds that lie wholly inside the training window count as "together", so
the two throughputs describe the same stretch of time. Every unit (one optimizer step, one batch generated) is timed with the device
synchronized and kept as a sample.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench.backends import LoraSettings, TrainSettings
from bench.telemetry.processes import preloading_context

READY_TIMEOUT_S = 1800.0  # a side loads its model (an unsloth import and a 20B load take minutes)
WARMUP_NEW_TOKENS = 8
MIN_WINDOW_S = 3.0
MIN_TOGETHER_ROUNDS = 4  # serving rounds wanted inside the training window
MAX_TOGETHER_STEPS = 200


@dataclass(frozen=True)
class Side:
    """What one process runs: the parent's session settings, made picklable."""

    role: str  # "train" | "serve"
    gpu: int | None  # nvidia-smi index; None: the CPU
    model: str
    backend: str
    backend_options: dict
    dataset: str
    fixed_length: int | None
    lora_r: int
    train: TrainSettings
    batch_size: int
    effort: str
    new_tokens: int
    threads: int | None = None  # CPU threads of this side (CPU runs split the cores)


@dataclass(frozen=True)
class Unit:
    """One optimizer step or one served batch: when it ran (host monotonic clock, shared by the
    processes of a host) and how many tokens it trained or generated."""

    start: float
    end: float
    tokens: int

    @property
    def tok_s(self) -> float:
        return self.tokens / (self.end - self.start)


def _side_main(side: Side, conn, stop) -> None:
    """A side's process: set up, say ready, then run units on request until told to quit."""
    try:
        runner = _Runner(side)
        conn.send(("ready", runner.info))
        while True:
            command, arg = conn.recv()
            if command == "quit":
                runner.close()
                conn.send(("done", None))
                return
            conn.send(("units", runner.run(arg, stop)))
    except BaseException as exc:  # report it to the parent, which fails the case with it
        import traceback

        conn.send(("error", f"{side.role} side: {type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}"))


class _Runner:
    def __init__(self, side: Side) -> None:
        from bench.telemetry.devices import pin

        self.device = pin(side.gpu)
        if side.backend == "unsloth":
            import unsloth  # noqa: F401  -- before transformers, as in the main process
        import torch

        if side.threads:
            torch.set_num_threads(side.threads)
        from bench.backends import get_backend
        from bench.data import TrainingData, inference_prompts, load_training_dataset
        from bench.models import resolve_model
        from bench.models.store import prompt_completion_sets
        from bench.telemetry import Timer

        self.side = side
        self.timer = Timer(self.device)
        backend = get_backend(side.backend, self.device, **side.backend_options)
        source = resolve_model(side.model)
        backend.prepare(source)  # built by the parent already: this finds it
        rows = load_training_dataset(side.dataset)
        self.backend = backend
        if side.role == "train":
            from bench.telemetry.steps import SteppedTraining, StepGate

            self.loaded = backend.add_lora(backend.load(source), LoraSettings(side.lora_r))
            self.gate = StepGate(self.device)
            data = TrainingData(rows, prompt_completion_sets())(self.loaded.tokenizer, side.fixed_length)
            trainer = backend.trainer(self.loaded, data, side.train, [self.gate])
            self.training = SteppedTraining(trainer, self.gate)
            self.training.step()  # warm-up: compilation, allocator growth, optimizer state
        else:
            self.loaded = backend.load(source)
            backend.for_inference(self.loaded)
            self.prompts = inference_prompts(rows, self.loaded.tokenizer, side.batch_size, side.effort)
            backend.generate(self.loaded, self.prompts, WARMUP_NEW_TOKENS)
        self.info = {"device": self.device, "pid": os.getpid()}

    def _unit(self) -> Unit:
        start = time.monotonic()
        with self.timer:
            if self.side.role == "train":
                self.training.step()
                tokens = self.gate.tokens_per_step[-1]
            else:
                outputs = self.backend.generate(self.loaded, self.prompts, self.side.new_tokens)
                tokens = sum(len(ids) for ids in outputs)
        return Unit(start, start + self.timer.elapsed, tokens)

    def run(self, count: int | None, stop) -> list[Unit]:
        """`count` units, or units back to back until `stop` is set (count None)."""
        units = []
        while (len(units) < count) if count is not None else not stop.is_set():
            units.append(self._unit())
        return units

    def close(self) -> None:
        if self.side.role == "train":
            self.training.stop()
        self.backend.unload(self.loaded)


class SideProcess:
    """The parent's handle on one side."""

    def __init__(self, side: Side, context, stop) -> None:
        self.side = side
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_side_main, args=(side, child, stop), name=f"bench-{side.role}",
                                       daemon=True)

    def start(self) -> None:
        self.process.start()

    def send(self, command: str, arg: Any = None) -> None:
        self.conn.send((command, arg))

    def receive(self, timeout: float | None = None) -> Any:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"the {self.side.role} side did not answer within {timeout:.0f} s")
        kind, payload = self.conn.recv()
        if kind == "error":
            raise RuntimeError(payload)
        return payload

    def run(self, count: int) -> list[Unit]:
        self.send("run", count)
        return self.receive()

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self.send("quit")
                self.receive(timeout=120)
            except (OSError, EOFError, RuntimeError, TimeoutError):
                pass
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


@dataclass
class Interference:
    """Each side's units alone and together; the together serving units lie inside the window."""

    train_solo: list[Unit]
    serve_solo: list[Unit]
    train_together: list[Unit]
    serve_together: list[Unit]


class Pair:
    """`with Pair(train, serve) as pair: pair.measure(steps)`; both processes end with the block."""

    def __init__(self, train: Side, serve: Side, context=None) -> None:
        """`context`: where the two processes come from (the session's fork server)."""
        context = context or preloading_context()
        self.stop = context.Event()
        self.train = SideProcess(train, context, self.stop)
        self.serve = SideProcess(serve, context, self.stop)

    def __enter__(self) -> "Pair":
        started = False
        try:
            for side in (self.train, self.serve):  # both set up at once: nothing is timed yet
                side.start()
                started = True
            for side in (self.train, self.serve):
                side.receive(timeout=READY_TIMEOUT_S)
        except BaseException:
            if started:
                self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for side in (self.train, self.serve):
            side.close()

    def measure(self, solo_steps: int, solo_rounds: int) -> Interference:
        train_solo = self.train.run(solo_steps)
        serve_solo = self.serve.run(solo_rounds)
        steps = together_steps(train_solo, serve_solo)
        self.stop.clear()
        self.serve.send("run", None)  # serve until told to stop
        time.sleep(min(1.0, statistics.median(u.end - u.start for u in serve_solo)))  # let serving get going
        train_together = self.train.run(steps)
        self.stop.set()
        serve_all = self.serve.receive()
        window = (train_together[0].start, train_together[-1].end)
        inside = [u for u in serve_all if u.start >= window[0] and u.end <= window[1]]
        return Interference(train_solo, serve_solo, train_together, inside)


def together_steps(train_solo: list[Unit], serve_solo: list[Unit]) -> int:
    """Optimizer steps of the together phase: enough that several serving rounds fit inside it."""
    step_s = statistics.median(u.end - u.start for u in train_solo)
    round_s = statistics.median(u.end - u.start for u in serve_solo)
    window = max(MIN_WINDOW_S, (MIN_TOGETHER_ROUNDS + 1) * round_s * 1.5)
    return max(len(train_solo), min(MAX_TOGETHER_STEPS, math.ceil(window / step_s)))


def split_unavailable(gpus: list[int]) -> str | None:
    """Why the split placement cannot run with these GPUs, or None."""
    if len(gpus) < 2:
        return "split placement needs two GPUs: pass --gpu 0,1 (training on the first, serving on the second)"
    return None
