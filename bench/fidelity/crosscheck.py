"""The cross-check: the harness's headline figures against a plain script's, on the same host.

A figure of the harness is worth something only if it is what a user's own script measures on the
same machine. So, for a run's model, engine and GPU, this runs two things alternately, each in a
fresh interpreter: `plain.py` (the engine alone, timed with a clock; as a user's training script
and a loading and inference script, each where the run measured what it times) and the harness
itself (pytest on the suites, selecting the run's load cases, its generation points and its first
training point, exactly as the run ran them), plain, harness, plain, ... for `repeats` rounds. Per
figure the ratio harness / plain and its 95% interval come from those paired repeats
(`bench.analysis.fidelity`).
Before the repeats, the plain script loads once more with empty compile caches: the first load on a
machine, reported as `load_s` with cache "first". Where the plain script also measured a figure
with the harness's instruments (plain.py), the figure's record carries those ratios too, and for
generation the harness's repeats time the plain script's way in their own process between their
rounds (`--plain-control`), which splits a gap into the harness's process and its code path.

Both sides get the run's environment: its GPU, its thread count on a CPU, its compile caches (so a
cold load is a fresh process's with the caches earlier runs left, as the seed's was). The harness's
repeats are runs of their own under `<run>/crosscheck/`; the ratios are appended to the run's
results as `fidelity_ratio` records.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bench.analysis.fidelity import FIDELITY_METRIC, FigureCheck
from bench.data.loading import load_training_dataset
from bench.errors import BenchError
from bench.models import ModelSource, resolve_model
from bench.records.metrics import METRICS
from bench.records.profiles import Profile, generation_id, get_profile, training_id
from bench.records.results import RESULTS_FILE, Measurement, RunManifest, ResultsWriter, read_results
from bench.telemetry.environment import redact

PLAIN_SCRIPT = Path(__file__).with_name("plain.py")
FOLDER = "crosscheck"
DEFAULT_REPEATS = 3
WARM_LOADS = 2
# plain.speed_probes' figures, as the table of what differed names them
PROBES = {"python_loop_us": "microseconds per pure-Python loop iteration (best of 5)",
          "torch_op_us": "microseconds per small torch op on the device, one launch each on a GPU (best of 5)"}
# What the plain script must not inherit: pytest's own variables and the harness's test-only hooks
# (a slowed harness is what the cross-check must catch, not what it compares against).
NOT_INHERITED = ("PYTEST_", "BENCH_TEST_")
COMPILE_CACHE_VARIABLES = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "UNSLOTH_COMPILE_LOCATION",
                           "UNSLOTH_MEGA_CACHE_DIR")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class Setup:
    """What both sides run, taken from the run: the engine and where its weights are, the device
    (`gpu`: the --gpu value, "cpu" or an index), the profile's points and the run's options."""

    engine: str
    target: str  # what `from_pretrained` is given: the prepared weights the harness loads
    gpu: str
    source: ModelSource
    profile: Profile
    four_bit: bool
    options: dict[str, str]  # --model, --backend, --profile, --precision, --dataset, --isolate, ...
    suites_dir: Path
    environment: dict[str, str]  # the run's recorded environment (threads, compile caches)
    # The cases the run measured (`test_load[cold]`, ...): a run narrowed with -k is cross-checked
    # on what it has, not on every point of its profile. None: every point.
    measured: frozenset[str] | None = None

    @property
    def device(self) -> str:
        return "cpu" if self.gpu == "cpu" else "cuda"

    @property
    def generations(self) -> list[tuple[int, str]]:
        return [(b, e) for b, e in self.profile.generations if self._measured(f"test_generate[{generation_id(b, e)}]")]

    @property
    def training(self) -> tuple[int, tuple[int, int]] | None:
        if not self.profile.trainings:
            return None
        first = self.profile.fit_points[0] if self.profile.fit_points else self.profile.trainings[0]
        return self.profile.trainings[0] if self._measured(f"test_train[{training_id(*first)}]") else None

    @property
    def loads(self) -> list[str]:
        return [cache for cache in ("cold", "warm") if self._measured(f"test_load[{cache}]")]

    def _measured(self, case: str) -> bool:
        return self.measured is None or case in self.measured


@dataclass(frozen=True)
class Figure:
    metric: str
    suite: str
    params: dict

    @property
    def name(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params.items())


def setup_for_run(run_dir: Path, gpu: str | None = None) -> Setup:
    """What the cross-check of the run in `run_dir` runs: its model, engine, profile and options,
    on its GPU (or `gpu`, the --gpu value, where given); the weights as the run prepared them."""
    from bench.backends import engine_options, get_backend

    manifest = RunManifest.read(run_dir)
    if "," in manifest.backend or len(manifest.gpus) > 1:
        raise BenchError(f"{run_dir}: a run of several engines or GPUs; the cross-check takes one engine on one "
                         "device: run it for one of them, e.g. pytest suites/ --gpu 0 --backend unsloth")
    options = manifest.options or {"--model": manifest.model, "--backend": manifest.backend,
                                   "--profile": manifest.profile}
    gpu = gpu or (str(manifest.gpus[0]["index"]) if manifest.gpus else "cpu")
    source = resolve_model(options["--model"])
    device = "cpu" if gpu == "cpu" else "cuda"
    profile = get_profile(options["--profile"])
    backend = get_backend(manifest.backend, device,
                          **engine_options(manifest.backend, options.get("--precision", "auto"), profile.max_seq_length))
    setup = Setup(engine=manifest.backend, target="", gpu=gpu, source=source, profile=profile,
                  four_bit=backend.four_bit(source), options=options, suites_dir=suites_dir(),
                  environment={k: v for k, v in manifest.environment.items() if isinstance(v, str)},
                  measured=measured_cases(run_dir))
    if not figures(setup):
        raise BenchError(f"{run_dir}: the run measured none of the figures the cross-check compares (load, "
                         "generation, training): cross-check a run of suites/test_load.py, test_infer.py or test_train.py")
    return replace(setup, target=backend.prepare(source))


def measured_cases(run_dir: Path) -> frozenset[str] | None:
    """The cases the run has results of, by their pytest names; None for a run with no results yet."""
    names = frozenset(r.test_id.rsplit("::", 1)[-1] for r in read_results(run_dir) if r.status == "ok")
    return names or None


def suites_dir() -> Path:
    """The suites as installed (`bench.suites`), else beside the package in a checkout."""
    spec = importlib.util.find_spec("bench.suites")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(__file__).resolve().parents[2] / "suites"


def figures(setup: Setup) -> list[Figure]:
    """The run's headline figures: cold and warm load, time to first token and decode rate at every
    generation point, step time at the first training point and its peak memory on a GPU."""
    out = [Figure("load_s", "load", {"cache": cache}) for cache in setup.loads]
    for batch, effort in setup.generations:
        point = {"batch_size": batch, "effort": effort}
        out += [Figure("ttft_s", "infer", point), Figure("decode_tok_s", "infer", point)]
    if setup.training:
        rank, (batch, accumulation) = setup.training
        point = {"lora_r": rank, "batch_size": batch, "grad_accum": accumulation}
        out.append(Figure("s_per_step", "train", point))
        if setup.device != "cpu":
            out.append(Figure("peak_vram_gb", "train", point))
    return out


def crosscheck(run_dir: Path, setup: Setup, repeats: int = DEFAULT_REPEATS,
               say: Callable[[str], None] = lambda line: None) -> tuple[list[Measurement], str | None]:
    """Run the cross-check for the run in `run_dir` and append its records there: (the records, why
    it stopped before its last repeat or None). A repeat that fails or is interrupted costs only the
    repeats not yet finished: on a GPU each one takes minutes, and the finished ones still say what
    they measured (with a wider interval)."""
    if repeats < 1:
        raise BenchError(f"--crosscheck-repeats {repeats}: give 1 or more (3 or more for an interval)")
    folder = Path(run_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    spec = folder / f"plain-spec-{stamp}.json"
    spec.write_text(json.dumps(plain_spec(setup, folder)), encoding="utf-8")
    say(f"cross-check: the first load with empty compile caches, then {repeats} x (plain script, harness)")
    first = _plain(spec, folder / f"plain-first-{stamp}", setup, first=True)
    plain_runs, harness_runs, order = [], [], []
    stopped = None
    try:
        for i in range(repeats):
            say(f"cross-check {i + 1}/{repeats}: plain script")
            plain = _plain(spec, folder / f"plain-{stamp}-{i}", setup)
            order.append(("plain", plain["started"]))
            say(f"cross-check {i + 1}/{repeats}: harness")
            started = time.time()
            harness_runs.append(_harness(folder / f"harness-{stamp}-{i}", setup))
            plain_runs.append(plain)
            order.append(("harness", started))
    except (BenchError, KeyboardInterrupt) as exc:
        if not harness_runs:
            raise
        stopped = (f"the cross-check stopped after {len(harness_runs)} of {repeats} repeats "
                   f"({exc or 'interrupted'}); its ratios are those repeats'")
    records = _records(run_dir, setup, first, plain_runs, harness_runs, stamp)
    (folder / f"order-{stamp}.json").write_text(json.dumps(order), encoding="utf-8")
    return records, stopped


def _records(run_dir: Path, setup: Setup, first: dict, plain_runs: list[dict],
             harness_runs: list[list[Measurement]], stamp: str) -> list[Measurement]:
    """The first load and each figure's ratio from the paired repeats, appended to the run's results."""
    manifest = RunManifest.read(run_dir)
    records = [_first_load(manifest, setup, first)]
    for figure in figures(setup):
        harness = [_harness_samples(run, figure) for run in harness_runs]
        plain = [_plain_samples(run, figure) for run in plain_runs]
        tolerance = METRICS[figure.metric].fidelity_tolerance
        check = FigureCheck(figure.metric, figure.suite, figure.params, harness, plain, tolerance)
        steps = (_instruments(figure, plain_runs, harness, plain) + _hosted(figure, plain_runs, plain)
                 + _control(figure, harness_runs, harness, plain))
        records.append(_ratio_record(manifest, setup, check, stamp, steps,
                                     _context_differences(figure, plain_runs, harness_runs)))
    writer = ResultsWriter(Path(run_dir) / RESULTS_FILE)
    try:
        for record in records:
            writer.write(record)
    finally:
        writer.close()
    return records


def after_run(run_dir: Path, repeats: int, say: Callable[[str], None]) -> tuple[list[Measurement], str | None, float]:
    """The cross-check at the end of a run: (its records, why it did not finish or None, seconds)."""
    started = time.perf_counter()
    try:
        records, stopped = crosscheck(run_dir, setup_for_run(run_dir), repeats, say)
        return records, stopped, round(time.perf_counter() - started, 4)
    except BenchError as exc:
        return [], f"the cross-check against a plain script did not finish: {exc}", round(time.perf_counter() - started, 4)


def plain_spec(setup: Setup, folder: Path) -> dict:
    """What the plain script is told: the same weights, settings, prompts and training rows as the
    harness's cases (the rows as conversations: it renders them itself, as a user would)."""
    rows = load_training_dataset(setup.options.get("--dataset", "builtin"))
    conversations = [{"messages": row["messages"], "reasoning_effort": row.get("reasoning_effort")} for row in rows]

    def asked(n: int) -> list[list[dict]]:  # the harness's prompts: the first n rows' turns up to the answer
        return [[m for m in rows[i % len(rows)]["messages"] if m["role"] != "assistant"] for i in range(n)]

    spec = {"engine": setup.engine, "model": setup.target, "device": setup.device, "four_bit": setup.four_bit,
            "max_seq_length": setup.profile.max_seq_length,
            "warm_loads": WARM_LOADS if "warm" in setup.loads else 0,
            "rounds": setup.profile.infer_rounds,
            "generate": [{"batch_size": b, "effort": e, "new_tokens": setup.profile.effort_tokens[e],
                          "conversations": asked(b)} for b, e in setup.generations]}
    if setup.training:
        rank, (batch, accumulation) = setup.training
        meaningful = setup.source.loss_meaningful
        spec["train"] = {
            "lora": {"r": rank, "alpha": 2 * rank, "dropout": 0.0, "seed": 3407},
            "batch_size": batch, "grad_accum": accumulation, "steps": setup.profile.steps_for(meaningful),
            "learning_rate": setup.profile.learning_rate_for(setup.source.kind), "warmup_steps": 2, "seed": 0,
            "fixed_length": setup.profile.fixed_length_for(meaningful), "conversations": conversations,
            "output_dir": str(folder / "plain-trainer")}
    return spec


def _environment(setup: Setup, empty_caches: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(NOT_INHERITED)}
    for name in COMPILE_CACHE_VARIABLES + (THREAD_VARIABLES if setup.device == "cpu" else ()):
        if name in setup.environment:
            env[name] = setup.environment[name]
    if empty_caches is not None:
        for name in COMPILE_CACHE_VARIABLES:
            env[name] = str(empty_caches / name.lower())
    if setup.device != "cpu":
        env.update(CUDA_DEVICE_ORDER="PCI_BUS_ID", CUDA_VISIBLE_DEVICES=setup.gpu)
    return env


def _plain(spec: Path, stem: Path, setup: Setup, first: bool = False) -> dict:
    """One repeat of the plain script: a training script, and a loading and inference script or,
    where the harness isolates its groups, a loading script and an inference script; each a fresh
    interpreter (see plain.py), merged; with `first`, one load on empty compile caches."""
    data = json.loads(spec.read_text(encoding="utf-8"))
    if first:
        return _plain_process({**data, "first": True}, stem, setup, empty_caches=True)
    parts = []
    if data.get("train"):
        parts.append(_plain_process({**data, "warm_loads": 0, "generate": []}, stem.with_name(stem.name + "-train"),
                                    setup))
    rest = {k: v for k, v in data.items() if k != "train"}
    if rest["warm_loads"] and rest["generate"] and groups_apart(setup):
        parts.append(_plain_process({**rest, "generate": []}, stem.with_name(stem.name + "-load"), setup))
        parts.append(_plain_process({**rest, "warm_loads": 0}, stem, setup))
    elif rest["warm_loads"] or rest["generate"] or not parts:
        parts.append(_plain_process(rest, stem, setup))
    merged = {k: v for part in parts for k, v in part.items()}
    merged.update(started=min(p["started"] for p in parts), cold_load_s=[p["cold_load_s"] for p in parts],
                  cold_load_host=[p.get("cold_load_host") for p in parts])
    return merged


def groups_apart(setup: Setup) -> bool:
    """Whether the harness ran its load cases and its generation cases in processes of their own:
    `--isolate` group or case, or auto on a GPU (bench.harness.isolate.resolve_mode, which this layer
    cannot import; a test holds the two together)."""
    mode = setup.options.get("--isolate", "auto")
    return mode in ("group", "case") or (mode == "auto" and setup.device != "cpu")


def _plain_process(spec: dict, stem: Path, setup: Setup, empty_caches: bool = False) -> dict:
    out, log, spec_file = stem.with_suffix(".json"), stem.with_suffix(".log"), stem.with_suffix(".spec.json")
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="bench-empty-caches-") as empty:
        env = _environment(setup, Path(empty) if empty_caches else None)
        _run([sys.executable, str(PLAIN_SCRIPT), str(spec_file), str(out)], env, log, "the plain script")
    spec_file.unlink()  # the run's spec file holds it; one copy of the conversations is enough
    return json.loads(out.read_text(encoding="utf-8"))


def harness_command(setup: Setup, run_dir: Path) -> list[str]:
    """pytest on the run's suites, selecting the cases the cross-check compares, with the run's options."""
    suites = setup.suites_dir
    nodeids = [f"{suites / 'test_load.py'}::test_load[{cache}]" for cache in setup.loads]
    nodeids += [f"{suites / 'test_infer.py'}::test_generate[{generation_id(b, e)}]" for b, e in setup.generations]
    if setup.training:
        first = setup.profile.fit_points[0] if setup.profile.fit_points else setup.training
        nodeids.append(f"{suites / 'test_train.py'}::test_train[{training_id(*first)}]")
    options = [arg for name, value in setup.options.items() for arg in (name, value)]
    return [sys.executable, "-m", "pytest", *nodeids, "-q", "-p", "no:cacheprovider", *options, "--gpu", setup.gpu,
            "--crosscheck", "off", "--plain-control", "--report-dir", str(run_dir.parent), "--run-id", run_dir.name]


def _harness(run_dir: Path, setup: Setup) -> list[Measurement]:
    # pytest's exit status says whether the baseline's checks passed, which is not this run's business
    _run(harness_command(setup, run_dir), _environment(setup) | _harness_hooks(), run_dir.with_suffix(".log"),
         "the harness", ok=(0, 1))
    return read_results(run_dir)


def _harness_hooks() -> dict[str, str]:
    """The harness side keeps the test-only hooks this process was given (a slowed harness)."""
    return {k: v for k, v in os.environ.items() if k.startswith("BENCH_TEST_")}


def _run(command: list[str], env: dict[str, str], log: Path, what: str, ok: tuple[int, ...] = (0,)) -> None:
    with open(log, "w", encoding="utf-8") as fh:
        try:
            code = subprocess.run(command, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=TIMEOUT_S).returncode
        except subprocess.TimeoutExpired:
            raise BenchError(f"cross-check: {what} ran past {TIMEOUT_S:.0f} s (log: {log})") from None
    if code not in ok:
        tail = redact(log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:][0]
                      if log.stat().st_size else "")
        raise BenchError(f"cross-check: {what} exited {code}: {tail} (log: {log})")


def _harness_samples(records: list[Measurement], figure: Figure) -> list[float]:
    found = _harness_record(records, figure)
    return list(found.samples) or [found.value]


def _harness_record(records: list[Measurement], figure: Figure) -> Measurement:
    found = [r for r in records if r.metric == figure.metric and r.suite == figure.suite and r.status == "ok"
             and r.value is not None and all(r.params.get(k) == v for k, v in figure.params.items())]
    if not found:
        raise BenchError(f"cross-check: the harness's repeat has no {figure.metric} for {figure.name}")
    return found[0]


def _harness_value(records: list[Measurement], figure: Figure, metric: str) -> float | None:
    """Another metric of the figure's case in a harness repeat (None where it was not measured)."""
    try:
        return _harness_record(records, Figure(metric, figure.suite, figure.params)).value
    except BenchError:
        return None


def _plain_samples(run: dict, figure: Figure) -> list[float]:
    if figure.metric == "load_s":
        return run["cold_load_s"] if figure.params["cache"] == "cold" else run["warm_load_s"]
    if figure.suite == "infer":
        return _point(run, figure)[figure.metric]
    return run["train"]["s_per_step"] if figure.metric == "s_per_step" else [run["train"]["peak_vram_gb"]]


def _instruments(figure: Figure, plain_runs: list[dict], harness: list[list[float]],
                 plain: list[list[float]]) -> list[dict]:
    """Where the plain script also timed a figure the harness's way (plain.py, "instruments": a warm
    load and the first generation point): each way's ratio to the plain figure, then the harness's
    to the last way's, each with its 95% interval from the same repeats. A gap the instruments
    reproduce in the script is theirs; what remains between the harness and the fully instrumented
    script is the rest of the harness."""
    if figure.suite == "infer":
        points = [_point(run, figure).get("instrumented") for run in plain_runs]
    elif figure.metric == "load_s" and figure.params.get("cache") == "warm":
        points = [run.get("warm_load_instrumented") for run in plain_runs]
    else:
        return []
    if not points or any(not p for p in points):
        return []
    out = []
    for way in points[0]:
        samples = [p[way][figure.metric] for p in points]
        out.append({**_interval(f"plain + {way}", "plain", samples, plain, figure),
                    "polls": sum(sum(p[way].get("polls", [])) for p in points)})
    last = list(points[0])[-1]
    out.append(_interval("harness", f"plain + {last}", harness, [p[last][figure.metric] for p in points], figure))
    return out


HOSTED = "plain, hosted by pytest"


def _hosted(figure: Figure, plain_runs: list[dict], plain: list[list[float]]) -> list[dict]:
    """For a figure at the first generation point: the plain script also ran its round as a pytest
    test in its own process (plain.py, "hosted"), interleaved with its plain rounds. Its ratio to
    the plain figure is what pytest's hosting of a test costs the same calls on the test's own
    thread: what a harness timing there would carry, and what the harness's own generation rounds,
    on a thread of their own on a GPU (RoundThread), are meant to avoid."""
    if figure.suite != "infer":
        return []
    hosted = [_point(run, figure).get("hosted") for run in plain_runs]
    if not hosted or any(not h for h in hosted):
        return []
    return [_interval(HOSTED, "plain", [h[figure.metric] for h in hosted], plain, figure)]


CONTROL = "plain, in the harness's process"


def _control(figure: Figure, harness_runs: list[list[Measurement]], harness: list[list[float]],
             plain: list[list[float]]) -> list[dict]:
    """For a generation figure: the harness's generation case also timed the plain script's way
    before each of its rounds, in its own process (--plain-control). That control against the plain
    script is what the process costs (its imports, pytest, what ran in it before); the harness
    against the control, interleaved in one process, is what the case's own code path costs."""
    if figure.suite != "infer":
        return []
    control = Figure(f"plain_{figure.metric}", figure.suite, figure.params)
    try:
        samples = [_harness_samples(run, control) for run in harness_runs]
    except BenchError:  # a repeat without the control (a harness of before --plain-control)
        return []
    return [_interval(CONTROL, "plain", samples, plain, figure), _interval("harness", CONTROL, harness, samples, figure)]


def _context_differences(figure: Figure, plain_runs: list[dict],
                         harness_runs: list[list[Measurement]]) -> list[dict]:
    """For a generation point: what differed between the harness's process and the plain script's
    as each began to generate (plain.process_context), one row per setting that differed in any
    repeat, with each side's values over the repeats (distinct, in order); first, how much of each
    generation's wall time the process spent on a CPU (near 1: the loop had a core to itself) and,
    on a GPU, how many kernels each launched per token (the same count: the same work, done slower
    or faster; another count: another path through the engine). The instruments say what the
    harness's own measuring costs; this says what else was not alike."""
    if figure.metric != "decode_tok_s":  # the decode record carries it for the whole point
        return []
    records = [_harness_record(run, figure) for run in harness_runs]
    harness = [r.extra.get("context") for r in records]
    plain = [run.get("generate_context") for run in plain_runs]
    if not harness or any(c is None for c in harness + plain):
        return []
    rows = []
    shares = [[r.extra.get("cpu_share") for r in records], [_point(run, figure).get("cpu_share") for run in plain_runs]]
    _measured(rows, "own CPU seconds / wall seconds of a generation, median per repeat",
              [[statistics.median(values) if values else None for values in side] for side in shares], ".2f")
    _measured(rows, "kernel launches per token, one profiled generation per repeat",  # on a GPU
              [[_harness_value(run, figure, "launches_per_token") for run in harness_runs],
               [_point(run, figure).get("launches_per_token") for run in plain_runs]], ".0f")
    for probe, what in PROBES.items():
        _measured(rows, f"{what}, as generation began",
                  [[(c.get("probes") or {}).get(probe) for c in contexts] for contexts in (harness, plain)], ".3g")
    flat = [[_flat(c) for c in contexts] for contexts in (harness, plain)]
    for key in sorted({key for side in flat for context in side for key in context}):
        sides = [[context.get(key) for context in side] for side in flat]
        if any(h != p for h, p in zip(*sides)):
            rows.append({"setting": key, **{side: redact(", ".join(dict.fromkeys(json.dumps(v) for v in values)))
                                            for side, values in zip(("harness", "plain"), sides)}})
    return rows


def _measured(rows: list[dict], what: str, sides: list[list[float | None]], spec: str) -> None:
    """A measured row, not a setting: shown whether or not the sides differ, where every repeat of
    both sides has it (one value per repeat, harness then plain)."""
    if all(sides[0] + sides[1]):
        rows.append({"setting": f"measured: {what}",
                     **{side: ", ".join(format(value, spec) for value in values)
                        for side, values in zip(("harness", "plain"), sides)}})


def _flat(context: dict) -> dict:
    """The context with its environment variables as settings of their own ("environment: NAME"),
    a value that lists lines (Unsloth writes sets that way, in no fixed order) as its sorted lines."""
    out = {k: v for k, v in context.items() if k not in ("environment", "probes")}
    out.update({f"environment: {k}": "\n".join(sorted(v.split("\n"))) if "\n" in v else v
                for k, v in context.get("environment", {}).items()})
    return out


def _interval(side: str, against: str, samples: list[list[float]], reference: list[list[float]],
              figure: Figure) -> dict:
    ratio, low, high = FigureCheck(figure.metric, figure.suite, figure.params, samples, reference, 0.0).interval
    return {"side": side, "against": against, "ratio": ratio, "low": low, "high": high}


def _point(run: dict, figure: Figure) -> dict:
    return next(p for p in run["generate"] if p["batch_size"] == figure.params["batch_size"]
                and p["effort"] == figure.params["effort"])


def _record(manifest: RunManifest, setup: Setup, **fields) -> Measurement:
    gpu = manifest.gpus[0] if manifest.gpus and setup.device != "cpu" else {}
    spec = METRICS[fields["metric"]]
    return Measurement(run_id=manifest.run_id, unit=spec.unit, better=spec.better, model=manifest.model,
                       backend=setup.engine, gpu_index=gpu.get("index"), gpu_name=gpu.get("name"),
                       gpu_uuid=gpu.get("uuid"), **fields)


def _first_load(manifest: RunManifest, setup: Setup, run: dict) -> Measurement:
    return _record(manifest, setup, test_id="crosscheck::plain[first]", suite="load", metric="load_s",
                   value=run["cold_load_s"], samples=[run["cold_load_s"]], params={"cache": "first"},
                   extra={"measured_by": "the cross-check's plain script: a fresh interpreter whose compile caches "
                                         "were empty (the first load on a machine)"})


def _ratio_record(manifest: RunManifest, setup: Setup, check: FigureCheck, stamp: str,
                  instruments: list[dict], context: list[dict]) -> Measurement:
    ratio, low, high = check.interval
    return _record(manifest, setup, test_id=f"crosscheck::{check.metric}[{Figure(check.metric, check.suite, check.params).name}]",
                   suite=check.suite, metric=FIDELITY_METRIC, value=ratio, samples=check.per_repeat,
                   params={**check.params, "figure": check.metric},
                   extra={"low": low, "high": high, "verdict": check.verdict, "tolerance": check.tolerance,
                          "unit": METRICS[check.metric].unit, "harness": check.harness, "plain": check.plain,
                          "repeats": check.repeats, "crosscheck": stamp,
                          **({"instruments": instruments} if instruments else {}),
                          **({"context_differences": context} if context else {})})
