"""Session-wide state of a suites run: validated options, the run directory, records and checks.

Everything a user can get wrong is checked in `BenchSession.__init__`, before collection, so bad
input is one line and a non-zero exit with no work done. The run directory is made only when
suite cases are actually collected (`start`), so `pytest tests/` leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import environment
from bench.backends import TrainSettings, resolve_backend_name
from bench.baselines import Baseline, CheckOutcome, evaluate, find_default, load_baseline, unmatched_checks
from bench.devices import nvml_gpus, parse_gpu_option, pin
from bench.errors import BenchError
from bench.matrix import TINY_LEARNING_RATE, get_profile, grid
from bench.metrics import METRICS
from bench.models import resolve_model
from bench.results import Measurement, ResultsWriter, RunManifest, read_results


@dataclass(frozen=True)
class BenchOptions:
    gpu: str | None = None
    model: str = "tiny-gpt-oss"
    backend: str = "auto"
    profile: str = "quick"
    baseline: str | None = None
    compare: str | None = None
    fail_on_regression: bool = False
    report_dir: str = "reports"
    dataset: str = "builtin"
    run_id: str | None = None
    precision: str = "auto"
    threshold: float = 0.05
    resume: str | None = None
    gpu_price_per_hour: float | None = None
    isolate: bool = False
    worker_run: str | None = None  # set in an isolated case's process: the parent's run directory

PRECISIONS = {"auto": None, "4bit": True, "bf16": False}


class BenchSession:
    def __init__(self, options: BenchOptions, argv: list[str] | None = None) -> None:
        self.options = options
        self.argv = environment.redact_argv(list(argv if argv is not None else sys.argv))
        self.profile = get_profile(options.profile)
        self.source = resolve_model(options.model)
        self.gpu_indices = parse_gpu_option(options.gpu, nvml_gpus())
        if self.gpu_indices and len(self.gpu_indices) > 1:
            raise BenchError(f"--gpu {options.gpu}: one GPU per process; run one pytest per GPU "
                             "(e.g. --gpu 0 and --gpu 1) and join them with `bench merge`")
        self.device = self._pick_device(options.gpu is not None)
        self.backend_name = resolve_backend_name(options.backend, self.device != "cpu")
        self.hardware = self._hardware_name()
        self.baseline, self.baseline_hardware_matches = self._pick_baseline()
        if options.precision not in PRECISIONS:
            raise BenchError(f"--precision {options.precision}: choose one of {', '.join(PRECISIONS)}")
        self.report_root = _writable_dir(Path(options.report_dir))
        self.compare_records = _read_compare(options.compare) if options.compare else None
        self.resume_dir = self._check_resume(options.resume) if options.resume else None
        self.finished: set[str] = set()  # cases of a resumed run that need not run again
        self.run_dir: Path | None = None
        self.manifest: RunManifest | None = None
        self._writer: ResultsWriter | None = None
        self.records: list[Measurement] = []
        self.outcomes: list[CheckOutcome] = []
        self.timings: dict[str, float] = {}
        self.changes: list = []  # MetricChange of every case compared with --compare
        self._compared_keys: set[tuple] = set()  # case keys this run measured, for what it lacks

    # ---- validation -------------------------------------------------------------------------
    def _pick_device(self, explicit: bool) -> str:
        index = self.gpu_indices[0] if self.gpu_indices else None
        if index is None:
            return "cpu"
        if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
            raise BenchError("--gpu: CUDA was initialized before the harness could pin the GPU; "
                             "do not touch CUDA in conftest.py or plugins loaded earlier")
        device = pin(index)
        import torch

        if not torch.cuda.is_available():
            if explicit:
                raise BenchError(f"--gpu {self.options.gpu}: this torch build ({torch.__version__}) has no CUDA; "
                                 "install a CUDA build of torch or drop --gpu")
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            self.gpu_indices = None
            return "cpu"
        return device

    def _hardware_name(self) -> str:
        if self.device == "cpu":
            return "cpu"
        return next((g.name for g in nvml_gpus() if g.index == self.gpu_indices[0]), "cuda")

    def _pick_baseline(self) -> tuple[Baseline | None, bool]:
        if self.options.baseline:
            baseline, matches = load_baseline(self.options.baseline), True
        else:
            baseline, matches = find_default(self.source.spec, self.hardware)
        if baseline is not None:
            cases = grid(self.profile, self.source.spec, self.backend_name)
            loose = unmatched_checks(baseline, cases)
            if loose:
                raise BenchError(f"baseline {baseline.path}: check '{loose[0].describe()}' matches no case of "
                                 f"profile {self.profile.name}; fix its 'where' or choose another --profile")
        return baseline, matches

    def _check_resume(self, spec: str) -> Path:
        path = Path(spec)
        try:
            manifest = RunManifest.read(path)
        except BenchError as exc:
            raise BenchError(f"--resume {spec}: {exc}") from None
        for what, mine, theirs in (("--model", self.source.spec, manifest.model),
                                   ("--profile", self.profile.name, manifest.profile),
                                   ("--backend", self.backend_name, manifest.backend)):
            if mine != theirs:
                raise BenchError(f"--resume {spec}: that run used {what} {theirs}, this one {mine}; "
                                 f"pass {what} {theirs} to resume it")
        return path.resolve()

    # ---- what the suites run -------------------------------------------------------------------
    @property
    def backend_options(self) -> dict:
        options = {"load_in_4bit": PRECISIONS[self.options.precision]}
        if self.backend_name == "unsloth":
            options["max_seq_length"] = self.profile.max_seq_length
        return options

    @property
    def fixed_length(self) -> int | None:
        """Training rows of full length where loss means nothing (replicas): speed and memory at the
        seed's 1024 tokens rather than at the short synthetic conversations' length."""
        return None if self.source.loss_meaningful else self.profile.max_seq_length

    @property
    def train_steps(self) -> int:
        """Enough steps to reach the loss target where loss means something; a few timed ones otherwise."""
        return self.profile.train_steps if self.source.loss_meaningful else self.profile.timing_steps

    @property
    def adapter_steps(self) -> int:
        """Enough training that the adapter visibly changes greedy outputs."""
        return 8

    @property
    def resume_steps(self) -> int:
        """Steps of the checkpoint-recovery run, saved at half way (cheap on the tiny model)."""
        return 10 if self.source.loss_meaningful else max(4, self.profile.timing_steps)

    def train_settings(self, batch_size: int, grad_accum: int, steps: int, output_dir: Path,
                       save_steps: int | None = None) -> TrainSettings:
        lr = TINY_LEARNING_RATE if self.source.kind == "tiny" else self.profile.learning_rate
        return TrainSettings(batch_size, grad_accum, steps, lr, self.profile.max_seq_length, output_dir,
                             save_steps=save_steps)

    # ---- the run ------------------------------------------------------------------------------
    def start(self) -> Path:
        """Create the run directory and its manifest; called once suite cases are collected."""
        if self.run_dir is not None:
            return self.run_dir
        if self.resume_dir is not None:
            return self._reopen()
        if self.options.worker_run:  # an isolated case: append to the parent's run, own nothing else
            self.run_dir = Path(self.options.worker_run)
            self.manifest = RunManifest.read(self.run_dir)
            self._writer = ResultsWriter(self.run_dir / "results.jsonl")
            return self.run_dir
        run_id = self.options.run_id or _new_run_id(self.source.slug, self.hardware)
        self.run_dir = self.report_root / run_id
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.manifest = RunManifest(
            run_id=run_id, started=time.time(), command=self.argv, profile=self.profile.name,
            model=self.source.spec, backend=self.backend_name, device=self.device,
            git_commit=environment.git_commit(), hostname_sha256=environment.hostname_sha256(),
            gpus=environment.gpus(self.gpu_indices), versions=environment.versions(),
            environment={**environment.allowed_environment(), "host": environment.host()},
            baseline=str(self.baseline.path) if self.baseline else None, timings=self.timings,
            gpu_price_per_hour=self.options.gpu_price_per_hour,
        )
        if self.baseline and not self.baseline_hardware_matches:
            self.manifest.notes.append(f"baseline '{self.baseline.name}' was measured on {self.baseline.gpu}, "
                                       f"not on {self.hardware}: its checks are applied as documented targets")
        if not self.source.loss_meaningful:
            self.manifest.notes.append(f"{self.source.spec}: {self.source.why_no_loss}")
        if self.device != "cpu" and self.manifest.gpus:
            from bench.models.tiny import cache_root
            from bench.telemetry.calibration import cached

            gpu = self.manifest.gpus[0]
            self.manifest.calibration = cached(cache_root(), gpu["uuid"], gpu["driver"], self.device)
        self.manifest.write(self.run_dir)
        self._writer = ResultsWriter(self.run_dir / "results.jsonl")
        return self.run_dir

    def _reopen(self) -> Path:
        """Continue a killed run in its own directory: same manifest, finished cases kept."""
        from bench.resume import keep_finished

        self.run_dir = self.resume_dir
        self.manifest = RunManifest.read(self.run_dir)
        self.finished = keep_finished(self.run_dir)
        self.manifest.status = "incomplete"
        self.manifest.notes.append(f"resumed at {time.strftime('%Y-%m-%d %H:%M:%S')} with "
                                   f"{len(self.finished)} cases already finished")
        self.manifest.timings.update(self.timings)
        self.timings = self.manifest.timings
        self.manifest.write(self.run_dir)
        self._writer = ResultsWriter(self.run_dir / "results.jsonl")
        return self.run_dir

    def note_timing(self, name: str, seconds: float) -> None:
        """Run-level costs paid once per process (library import, model build), for the report."""
        self.timings[name] = round(seconds, 4)
        if self.manifest is not None:
            self.manifest.write(self.run_dir)

    def write(self, record: Measurement) -> list[CheckOutcome]:
        self.start()
        self._writer.write(record)
        return self._count(record)

    def _count(self, record: Measurement) -> list[CheckOutcome]:
        """Keep a record for the summary and check it against the baseline."""
        self.records.append(record)
        outcomes = evaluate(self.baseline, record.__dict__)
        self.outcomes.extend(outcomes)
        return outcomes

    def measurement(self, *, test_id: str, suite: str, metric: str, value: float | None, params: dict,
                    samples: list[float] | None = None, status: str = "ok", error: str | None = None,
                    extra: dict | None = None) -> Measurement:
        spec = METRICS[metric]
        return Measurement(
            run_id=self.manifest.run_id if self.manifest else "", test_id=test_id, suite=suite, metric=metric,
            value=value, unit=spec.unit, better=spec.better, samples=list(samples or []),
            params=params, model=self.source.spec, backend=self.backend_name,
            gpu_index=self.gpu_indices[0] if self.gpu_indices else None, status=status,
            error=environment.redact(error) if error else None, extra=extra or {})

    def compare_case(self, records: list[Measurement]) -> list:
        """This case's records against the same case of the --compare run: its regressions."""
        if self.compare_records is None or not records:
            return []
        from bench.compare import compare

        keys = {r.case_key() for r in records}
        self._compared_keys |= keys
        base = [r for r in self.compare_records if r.case_key() in keys]
        overrides = self.baseline.thresholds if self.baseline else None
        result = compare(base, records, self.options.threshold, overrides)
        self.changes.extend(result.changes)
        return result.regressions

    def comparison(self):
        """Everything --compare found so far, with the base run's measurements this run lacks."""
        from bench.compare import Comparison, comparable_keys

        missing = comparable_keys(self.compare_records or []) - self._compared_keys
        return Comparison(self.changes, only_base=sorted(missing, key=str))

    def adopt(self, records: list[Measurement]) -> None:
        """Records an isolated case's process wrote: counted here as if written here."""
        for record in records:
            self._count(record)

    def finish(self, interrupted: bool) -> None:
        if self.run_dir is None:
            return
        self._writer.close()
        if self.options.worker_run:
            return  # the parent owns the manifest and the report
        self.manifest.status = "incomplete" if interrupted else "complete"
        self.manifest.finished = time.time()
        self.manifest.write(self.run_dir)
        from bench.report import render_run

        render_run(self.run_dir)
        if self.compare_records is not None:
            from bench.report.comparison import to_markdown

            (self.run_dir / "comparison.md").write_text(
                to_markdown(self.comparison(), self.options.compare, str(self.run_dir)), encoding="utf-8")


def _read_compare(spec: str) -> list[Measurement]:
    path = Path(spec)
    if not path.exists():
        raise BenchError(f"--compare {spec}: no such run directory or results file")
    try:
        return read_results(path)
    except BenchError as exc:
        raise BenchError(f"--compare {spec}: {exc}") from None


def _new_run_id(model_slug: str, hardware: str) -> str:
    hw = re.sub(r"[^A-Za-z0-9]+", "-", hardware.replace("NVIDIA ", "")).strip("-").lower()
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{model_slug}-{hw}"


def _writable_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BenchError(f"--report-dir {path}: cannot write there ({exc.strerror}); "
                         "pass a writable directory with --report-dir") from None
    return path.resolve()
