"""Driving a trl/transformers Trainer one optimizer step at a time, and reading its loss curve.

pytest-benchmark times a callable per round. A Trainer owns its loop, so the loop runs in a worker
thread that waits at the start of every optimizer step until the benchmark's round releases it,
and signals when the step (all its micro-batches, the optimizer update, device synchronized) is
done. Each benchmark round is then exactly one real optimizer step of the real trainer; data
loading, logging and checkpoint saving between steps stay outside the timed region.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from transformers import TrainerCallback

from bench.telemetry import failpoints
from bench.telemetry.timer import synchronize

STEP_TIMEOUT_S = 3600.0


class StepGate(TrainerCallback):
    """Holds the training loop before each optimizer step and reports each step's end."""

    def __init__(self, device: str) -> None:
        self.device = device
        self._go = threading.Semaphore(0)
        self._done = threading.Semaphore(0)
        self.released = False  # once set, the loop runs freely (finish)
        self.stopping = False  # once set, training ends after the step under way (stop)
        self.tokens_per_step: list[int] = []  # non-padding input tokens of each optimizer step
        self._tokens_before = 0
        self._started = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        if not self.released:
            self._go.acquire()
        self._tokens_before = state.num_input_tokens_seen
        self._started = time.perf_counter()
        return control

    def on_step_end(self, args, state, control, **kwargs):
        synchronize(self.device)
        failpoints.stretch(time.perf_counter() - self._started)
        self.tokens_per_step.append(state.num_input_tokens_seen - self._tokens_before)
        if self.stopping:
            control.should_training_stop = True
        self._done.release()
        return control


class StepClock(TrainerCallback):
    """Each optimizer step's seconds, the device synchronized at its end. A process's first step
    carries its first-call compilation (trl's Triton kernels, the first cuBLAS calls: 1.5-3.4 s on
    an H100 against 0.2 s a step), a one-off cost that a check training on its own should not file
    as its training."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.seconds: list[float] = []
        self._started = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()
        return control

    def on_step_end(self, args, state, control, **kwargs):
        synchronize(self.device)
        self.seconds.append(time.perf_counter() - self._started)
        return control


class SteppedTraining:
    """`step()` runs one optimizer step; `finish()` lets the rest run and waits for the end;
    `stop()` ends it early."""

    def __init__(self, trainer: Any, gate: StepGate, **train_kwargs: Any) -> None:
        self.trainer = trainer
        self.gate = gate
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, kwargs=train_kwargs, name="trainer", daemon=True)
        self._finished = threading.Event()
        self._thread.start()

    def _run(self, **train_kwargs: Any) -> None:
        try:
            self.trainer.train(**train_kwargs)
        except BaseException as exc:  # handed to the caller's thread, which re-raises it
            self.error = exc
        finally:
            self._finished.set()
            self.gate._done.release()  # wake a step() that waits on a loop that has ended

    def step(self) -> None:
        finished_before = len(self.gate.tokens_per_step)
        self.gate._go.release()
        if not self.gate._done.acquire(timeout=STEP_TIMEOUT_S):
            raise TimeoutError(f"a training step took over {STEP_TIMEOUT_S:.0f} s")
        if self.error is not None:
            raise self.error
        # The loop may end right after its last step (a fast model): only a step that never ran is an error.
        if len(self.gate.tokens_per_step) == finished_before:
            raise RuntimeError("the trainer stopped before the requested number of steps")

    def stop(self) -> None:
        """End training early: at most one more, untimed, step instead of running to max_steps."""
        self.gate.stopping = True
        self.finish()

    def finish(self) -> None:
        self.gate.released = True
        self.gate._go.release()
        self._thread.join()
        if self.error is not None:
            raise self.error


def loss_curve(trainer: Any) -> list[tuple[int, float]]:
    """(step, training loss) for every logged step."""
    return [(int(h["step"]), float(h["loss"])) for h in trainer.state.log_history if "loss" in h]
