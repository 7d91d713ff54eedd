"""What the suites run under a session's options: the engine's settings, training and adapter
settings, adaptive rounds, the profiled round. Pure policy, computed from the profile, the model and
the options; the session holds one and the suites read it (`bench.workload`)."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.backends import TrainSettings, engine_options
from bench.harness.option_table import BenchOptions
from bench.models import ModelSource
from bench.records.profiles import Profile
from bench.telemetry.kernels import RoundProfile, profile_round
from bench.telemetry.rounds import Precision


@dataclass(frozen=True)
class Workload:
    profile: Profile
    source: ModelSource
    backend_name: str
    device: str
    options: BenchOptions

    @property
    def backend_options(self) -> dict:
        return engine_options(self.backend_name, self.options.precision, self.profile.max_seq_length)

    @property
    def case_options(self) -> dict[str, str]:
        """The options that decide what a case measures, as a command line gives them: what a later
        re-run of some cases (the cross-check) passes again."""
        options = {"--model": self.source.spec, "--backend": self.backend_name, "--profile": self.profile.name,
                   "--precision": self.options.precision, "--dataset": self.options.dataset,
                   "--isolate": self.options.isolate}
        if self.options.max_time is not None:
            options["--max-time"] = f"{self.options.max_time:g}"
        return options

    @property
    def fixed_length(self) -> int | None:
        return self.profile.fixed_length_for(self.source.loss_meaningful)

    def fixed_length_of(self, seq_len: int) -> int | None:
        """A training case's rows: of its own length where loss means nothing (replicas)."""
        return None if self.source.loss_meaningful else seq_len

    @property
    def train_steps(self) -> int:
        return self.profile.steps_for(self.source.loss_meaningful)

    def train_settings(self, batch_size: int, grad_accum: int, steps: int, output_dir: Path,
                       save_steps: int | None = None, seq_len: int | None = None) -> TrainSettings:
        lr = self.profile.learning_rate_for(self.source.kind)
        return TrainSettings(batch_size, grad_accum, steps, lr, seq_len or self.profile.max_seq_length, output_dir,
                             save_steps=save_steps)

    def adapter_settings(self, batch_size: int, grad_accum: int, output_dir: Path) -> TrainSettings:
        """The adapter check's training: enough that the adapter visibly changes greedy outputs, and
        no more, since only the save/load round trip is under test. Four steps at five times the
        training rate, without warm-up, changed all three greedy outputs of the tiny model as the 16
        at the training rate did (8 of those did not), in 0.8 s instead of 2.2 s on the CPU."""
        settings = self.train_settings(batch_size, grad_accum, 4, output_dir)
        return dataclasses.replace(settings, learning_rate=5 * settings.learning_rate, warmup_steps=0)

    @property
    def resume_steps(self) -> int:
        """Steps of the checkpoint-recovery run, saved at half way: a check, not a timing, so the
        fewest that leave steps on both sides of the checkpoint."""
        return 6 if self.source.loss_meaningful else 4

    def precision(self, samples: Callable[[], list[float]]) -> Precision | None:
        """Adaptive rounds for a case whose timed samples `samples()` returns; None: fixed rounds."""
        cap = self.options.max_time if self.options.max_time is not None else self.profile.max_time_s
        return Precision(samples, cap) if cap else None

    def profiled(self, round_: Callable[[], object]) -> RoundProfile | None:
        """One round under torch.profiler, on a GPU: why a case runs as fast as it does. Not on the
        CPU, where the profiler's event buffers (0.5 GB for one tiny generate) would be the case's
        peak memory and there are no kernels to count."""
        return profile_round(round_, self.device) if self.device.startswith("cuda") else None


def one_thread() -> None:
    """The tiny model on a CPU runs on one intra-op thread (this process, and through the
    environment every process it starts: a server, a child). Its matrices are too small for a
    second thread to help, and the second thread made whole runs noisy: five runs each on 2 cores,
    decode at batch 1 varied between runs by 29% with two threads and 12% with one (training step
    time 22% and 7%), at the same or better speed. Set OMP_NUM_THREADS to choose otherwise."""
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
