"""Profiles (quick, standard, fit, full) and the parameter grid each gives every suite.

A suite's test function names the parameters it takes (lora_r, train_batch, batch_size, effort);
the plugin parametrizes it from the active profile, so adding a rank or a batch size is a change
here, not in the suites.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.errors import BenchError
from bench.records.metrics import SUITES

# What the seed measured, and what every profile runs: loading, training, batched generation and
# the adapter's round trip.
CORE_SUITES = ("load", "train", "infer", "adapter")

EFFORTS = ("low", "medium", "high")
# The generation points the seed measured: one prompt at each reasoning effort, and batches of 2
# and 3 at medium, the effort it called optimal (its batch figures name no effort).
SEED_GENERATIONS = ((1, "low"), (1, "medium"), (1, "high"), (2, "medium"), (3, "medium"))
# Standard sweeps each axis from the seed's points rather than crossing them: the batch sizes at
# medium, the efforts at batch 1; the ranks at the seed's 2x8, the other batch shape (its two-GPU
# 4x4) at rank 8. On an H100 the crossed points said nothing the axes did not: the 20B replica's
# decode rate at one batch size moved with effort by less than its round-to-round spread (batch 3:
# 29.6 / 29.0 / 30.0 tok/s, batch 8: 67 / 70 / 71), and rank added the same memory at both shapes
# (r32 - r8: 2.83 GB at 2x8 and at 4x4). The ten crossed cases took 320 s of the 20B's standard run,
# which did not fit 15 minutes with them (docs/gpus.md).
# Full still crosses every axis.
STANDARD_GENERATIONS = SEED_GENERATIONS + ((4, "medium"), (8, "medium"))
STANDARD_TRAININGS = ((8, (2, 8)), (8, (4, 4)), (16, (2, 8)), (32, (2, 8)))
# Where the concurrency suite puts training and serving: two GPUs, or both on one.
PLACEMENTS = ("split", "shared")
# The servers the serving suite can start itself (no --endpoint): `transformers serve` without and
# with continuous batching.
SELF_SERVED = ("transformers", "transformers-cb")
# Fewer arrivals than this in a round do not make a Poisson process worth the name.
MIN_OPEN_LOOP_REQUESTS = 8


# The memory model's points (`bench fit`): every rank, batch and sequence length twice or more, the
# seed's r=8 2x8 at 1024 tokens and its r=32 among them; the accumulation is 1 (memory does not
# depend on it). Crossing all three axes (36 points) would add time, not terms to tell apart. A
# point trains six steps (three on a replica): the peak comes with the first optimizer step, and
# the loss target is the other profiles' business.
FIT_POINTS = ((8, (1, 1), 512), (8, (2, 1), 1024), (8, (4, 1), 2048), (16, (1, 1), 1024), (16, (2, 1), 2048),
              (16, (4, 1), 512), (32, (1, 1), 2048), (32, (2, 1), 1024), (32, (4, 1), 512), (64, (1, 1), 512),
              (64, (2, 1), 1024), (64, (4, 1), 2048), (8, (2, 8), 1024), (16, (2, 1), 1024), (32, (2, 1), 2048),
              (64, (2, 1), 512))

# Learning rate of the LoRA runs, by model kind: the tiny model is small enough to need a larger
# step than the seed's 2e-4 to move within a CPU-sized number of steps.
TINY_LEARNING_RATE = 2e-3


def generation_id(batch_size: int, effort: str) -> str:
    """A generation case's test id, as pytest shows it: test_generate[bs1-low]."""
    return f"bs{batch_size}-{effort}"


def training_id(lora_r: int, shape: tuple[int, int], seq_len: int | None = None) -> str:
    """A training case's test id: test_train[r8-b2x8], with its length where it has its own: r8-b2x8-s1024."""
    return f"r{lora_r}-b{shape[0]}x{shape[1]}" + (f"-s{seq_len}" if seq_len else "")


@dataclass(frozen=True)
class LoadShape:
    """One load point of the serving suite: `concurrency` users each sending their next request
    when the last one finished (closed loop), or requests arriving as a Poisson process (open
    loop) at `fraction` of the highest request rate the closed-loop sweep reached."""

    kind: str  # "concurrency" | "poisson"
    value: float

    @property
    def id(self) -> str:
        return f"c{int(self.value)}" if self.kind == "concurrency" else f"poisson{self.value:g}x"

    @property
    def params(self) -> dict:
        """What the records say about the load: a key that stays the same from run to run."""
        if self.kind == "concurrency":
            return {"concurrency": int(self.value)}
        return {"request_rate": f"{self.value:g}x"}


@dataclass(frozen=True)
class Profile:
    name: str
    lora_ranks: tuple[int, ...]
    train_batches: tuple[tuple[int, int], ...]  # (per-device batch, gradient accumulation)
    infer_batches: tuple[int, ...]
    efforts: tuple[str, ...]
    # steps for models whose loss means something; quick's 30 is the seed's minimal test (loss 2.04 ->
    # 1.43 in 30 steps), which the tiny model passes by a margin (under 1.5 from step 18, about 1.2 at 30)
    train_steps: int
    # steps for random-weight replicas, where only speed and memory count: one warm-up, the rest timed.
    # Eight, not four: on an H100 about one step in twelve of the 4-layer replica spiked 10-30% above its
    # run's median (19 of 229), which moves a run of three timed steps by 3-10%; paired A/A rounds' step
    # ratio spread (sd of its log) 0.040 with three timed steps, 0.031 with seven
    # (docs/measurements/gate-error-rates.md)
    timing_steps: int
    load_rounds: int
    infer_rounds: int
    # New tokens per reasoning effort: higher effort reasons longer, as gpt-oss does.
    effort_tokens: dict[str, int] = field(default_factory=dict)
    # Adaptive rounds: seconds of timed rounds a case may spend to reach a +-2% interval (None:
    # exactly the rounds above). Off in quick, whose job is a fast smoke run.
    max_time_s: float | None = None
    # Serving: closed-loop concurrency levels (the sweep stops once throughput stops growing),
    # open-loop rates as fractions of the sweep's peak, rounds per load point and requests per
    # round (at least two per user; open loop at least MIN_OPEN_LOOP_REQUESTS).
    serve_concurrency: tuple[int, ...] = (1, 2, 4, 8)
    serve_rate_fractions: tuple[float, ...] = (0.5, 0.9)
    serve_rounds: int = 2
    serve_requests: int = 8
    # The `transformers serve` variants the harness starts without --endpoint. Quick starts only the
    # continuous-batching one, the server a deployment would run: the plain one cost the README
    # command on an H100 about 18 s (its three load points and its start) of a run aimed at 90 s.
    servers: tuple[str, ...] = SELF_SERVED
    max_seq_length: int = 1024  # the seed's max_seq_length
    learning_rate: float = 2e-4
    # The suites a run of the whole directory includes; the others run when their file is named
    # (`pytest suites/test_serve.py`). Quick and standard leave out the two scenarios beyond the
    # seed's workload that start more processes and models of their own (a server; training and
    # serving side by side): on an H100 they were 28 s of the README command's 107 s and 198 s of the
    # 20B replica's quick run of 685 s (docs/gpus.md),
    # and standard's sweeps start both servers at up to ten load points each. Full runs them.
    suites: tuple[str, ...] = SUITES
    # (batch size, effort) points of the generation suite; empty: every batch size at every effort.
    # Quick runs the seed's five: the other four of its grid (batch 2 and 3 at low and high) were
    # 102 s of the 20B replica's 408 s on an H100 (308 s without them; docs/measurements/h100-runs.md).
    generation_points: tuple[tuple[int, str], ...] = ()
    # (LoRA rank, (batch, accumulation)) points of the training suite; empty: every rank at every shape.
    training_points: tuple[tuple[int, tuple[int, int]], ...] = ()
    # (LoRA rank, (batch, accumulation), sequence length) points of the training suite for fitting the
    # memory model (`bench fit`): each trains at its own length. Empty: every case at max_seq_length.
    fit_points: tuple[tuple[int, tuple[int, int], int], ...] = ()
    # Whether a run ends with the cross-check against a plain script (`bench.fidelity`): each repeat
    # starts the engine twice more, so the nightly profiles run it and quick only when asked.
    crosscheck: bool = False

    def __post_init__(self) -> None:
        outside = [p for p in self.generation_points if p[0] not in self.infer_batches or p[1] not in self.efforts]
        if outside:
            raise ValueError(f"profile {self.name}: generation point {outside[0]} is not on its batch sizes and efforts")
        outside = [p for p in self.training_points if p[0] not in self.lora_ranks or p[1] not in self.train_batches]
        if outside:
            raise ValueError(f"profile {self.name}: training point {outside[0]} is not on its ranks and batch shapes")

    @property
    def generations(self) -> tuple[tuple[int, str], ...]:
        """The (batch size, effort) cases of the generation suite, in the order they run."""
        return self.generation_points or tuple((b, e) for b in self.infer_batches for e in self.efforts)

    def steps_for(self, loss_meaningful: bool) -> int:
        """Training steps of a case: enough to reach the loss target where loss means something, a
        few timed ones otherwise (replicas)."""
        return self.train_steps if loss_meaningful else self.timing_steps

    def fixed_length_for(self, loss_meaningful: bool) -> int | None:
        """Training rows of full length where loss means nothing (replicas): speed and memory at the
        seed's 1024 tokens rather than at the short synthetic conversations' length."""
        return None if loss_meaningful else self.max_seq_length

    def learning_rate_for(self, model_kind: str) -> float:
        return TINY_LEARNING_RATE if model_kind == "tiny" else self.learning_rate

    @property
    def trainings(self) -> tuple[tuple[int, tuple[int, int]], ...]:
        """The (LoRA rank, (batch, accumulation)) cases of the training suite, in the order they run;
        the resume, adapter and concurrency checks train at the first."""
        if self.fit_points:
            return tuple(dict.fromkeys((r, shape) for r, shape, _ in self.fit_points))
        return self.training_points or tuple((r, b) for r in self.lora_ranks for b in self.train_batches)


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", lora_ranks=(8,), train_batches=((2, 2),), infer_batches=(1, 2, 3),
                     efforts=EFFORTS, train_steps=30, timing_steps=8, load_rounds=3, infer_rounds=3,
                     effort_tokens={"low": 16, "medium": 32, "high": 64}, suites=CORE_SUITES,
                     generation_points=SEED_GENERATIONS,
                     serve_concurrency=(1, 4), serve_rate_fractions=(0.9,), serve_requests=4,
                     servers=("transformers-cb",)),
    "standard": Profile("standard", lora_ranks=(8, 16, 32), train_batches=((2, 8), (4, 4)),
                        infer_batches=(1, 2, 3, 4, 8), efforts=EFFORTS, train_steps=60, timing_steps=8,
                        load_rounds=3, infer_rounds=3, effort_tokens={"low": 16, "medium": 32, "high": 64},
                        max_time_s=20.0, suites=CORE_SUITES, generation_points=STANDARD_GENERATIONS,
                        training_points=STANDARD_TRAININGS, serve_concurrency=(1, 2, 4, 8, 16, 32),
                        serve_rate_fractions=(0.25, 0.5, 0.75, 0.9), serve_rounds=3, serve_requests=16,
                        crosscheck=True),
    "fit": Profile("fit", lora_ranks=(8, 16, 32, 64), train_batches=((1, 1), (2, 1), (4, 1), (2, 8)),
                   infer_batches=(1,), efforts=("medium",), train_steps=6, timing_steps=3, load_rounds=1,
                   infer_rounds=1, effort_tokens={"medium": 32}, suites=("train",), max_seq_length=2048,
                   fit_points=FIT_POINTS),
    "full": Profile("full", lora_ranks=(8, 16, 32, 64), train_batches=((1, 16), (2, 8), (4, 4)),
                    infer_batches=(1, 2, 3, 4, 8, 16), efforts=EFFORTS, train_steps=200, timing_steps=8,
                    load_rounds=5, infer_rounds=5, effort_tokens={"low": 64, "medium": 128, "high": 256}, max_time_s=60.0,
                    serve_concurrency=(1, 2, 4, 8, 16, 32, 64), serve_rate_fractions=(0.25, 0.5, 0.75, 0.9),
                    serve_rounds=5, serve_requests=32, crosscheck=True),
}



def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise BenchError(f"--profile {name}: unknown profile; choose one of {', '.join(PROFILES)}") from None


def self_served(names: str | None, profile: Profile) -> tuple[str, ...]:
    """--servers NAMES (comma-separated), else the profile's."""
    if names is None:
        return profile.servers
    chosen = tuple(dict.fromkeys(n.strip() for n in names.split(",") if n.strip()))
    unknown = [n for n in chosen if n not in SELF_SERVED]
    if unknown or not chosen:
        raise BenchError(f"--servers {names}: {'unknown server ' + unknown[0] if unknown else 'no server named'}; "
                         f"choose from {', '.join(SELF_SERVED)} (another server: --endpoint URL)")
    return chosen


def load_shapes(profile: Profile) -> list[LoadShape]:
    return ([LoadShape("concurrency", c) for c in profile.serve_concurrency]
            + [LoadShape("poisson", f) for f in profile.serve_rate_fractions])


def grid(profile: Profile, model: str, backend: str, servers: tuple[str, ...] = ()) -> list[dict]:
    """Every case the suites would run under this profile, as record-like dicts (for validation)."""
    base = {"model": model, "backend": backend}
    cases = [{**base, "suite": "load", "params": {"cache": c}} for c in ("cold", "warm")]
    cases += ([{**base, "suite": "train", "params": {"lora_r": r, "batch_size": b, "grad_accum": a, "seq_len": n}}
               for r, (b, a), n in profile.fit_points] if profile.fit_points else
              [{**base, "suite": "train", "params": {"lora_r": r, "batch_size": b, "grad_accum": a}}
               for r, (b, a) in profile.trainings])
    cases += [{**base, "suite": "infer", "params": {"batch_size": b, "effort": e}} for b, e in profile.generations]
    cases += [{**base, "suite": "adapter", "params": {"lora_r": profile.trainings[0][0]}}]
    cases += [{**base, "suite": "concurrency", "params": {"placement": p}} for p in PLACEMENTS]
    cases += [{**base, "suite": "serve", "params": {"server": s, **load.params}}
              for s in servers for load in load_shapes(profile)]
    return cases


def axes(profile: Profile, servers: tuple[str, ...] = ()) -> dict[str, tuple[list, list[str]]]:
    """Suite test arguments the plugin parametrizes, with readable ids: name -> (values, ids). A
    name of several arguments ("batch_size,effort") gives a test that takes all of them their
    points together; a test that takes one of them alone gets its own axis."""
    loads = load_shapes(profile)
    fitted = {"lora_r,train_batch,seq_len": (list(profile.fit_points), [training_id(*p) for p in profile.fit_points])}
    return {
        **(fitted if profile.fit_points else {}),
        "batch_size,effort": (list(profile.generations), [generation_id(b, e) for b, e in profile.generations]),
        "lora_r,train_batch": (list(profile.trainings), [training_id(r, shape) for r, shape in profile.trainings]),
        "cache": (["cold", "warm"], ["cold", "warm"]),
        "lora_r": (list(profile.lora_ranks), [f"r{r}" for r in profile.lora_ranks]),
        "train_batch": (list(profile.train_batches), [f"b{b}x{a}" for b, a in profile.train_batches]),
        "batch_size": (list(profile.infer_batches), [f"bs{b}" for b in profile.infer_batches]),
        "effort": (list(profile.efforts), list(profile.efforts)),
        "placement": (list(PLACEMENTS), list(PLACEMENTS)),
        "server": (list(servers), list(servers)),
        "load": (loads, [load.id for load in loads]),
    }
