"""LoRA fine-tuning across ranks and batch settings: step time, throughput, loss, memory, adapter
size, and checkpoint recovery."""

import pytest

from bench.backends import LoraSettings
from bench.telemetry import Timer
from bench.telemetry.energy import EnergyCounter
from bench.telemetry.memory import CollectorTime
from bench.telemetry.rounds import run_rounds
from bench.analysis.loss import TARGET_LOSS, adapter_size_mb, final_loss, steps_to_target

pytestmark = pytest.mark.suite("train")


def test_train(bench, backend, prepared, case, benchmark, train_data, lora_r, train_batch, seq_len, tmp_path):
    from bench.telemetry.steps import SteppedTraining, StepGate, loss_curve  # transformers: not at collection

    batch_size, grad_accum = train_batch
    with case.phase("load and LoRA"):
        loaded = backend.add_lora(backend.load(bench.source), LoraSettings(lora_r))
    steps = bench.workload.train_steps
    gate = StepGate(bench.device)
    # one step more than timed: the last one runs under the profiler, outside the timed ones
    with case.phase("trainer set-up"):
        trainer = backend.trainer(loaded, train_data(loaded.tokenizer, bench.workload.fixed_length_of(seq_len)),
                                  bench.workload.train_settings(batch_size, grad_accum, steps + 1, tmp_path / "out",
                                                                seq_len=seq_len), [gate])
    run, timer = SteppedTraining(trainer, gate), Timer(bench.device)
    step_joules: list[float] = []

    collected: list[CollectorTime] = []

    def one_step():
        before = energy.joules()
        with CollectorTime() as gc_time, timer:
            run.step()
        collected.append(gc_time)
        if before is not None:
            step_joules.append(energy.joules() - before)

    benchmark.group = "train"
    with EnergyCounter(bench.device) as energy:
        run_rounds(benchmark, one_step, rounds=steps - 1, warmup_rounds=1)
    with case.phase("profiled step"):
        why = bench.workload.profiled(run.step)
    with case.phase("trainer end"):
        run.finish()

    step_s = timer.samples[1:]  # the first step is the warm-up: compilation, allocator growth
    case.add_timed_work(sum(step_s))
    case.add_phase("warm-up step", timer.samples[0])
    tokens = gate.tokens_per_step[1:steps]
    curve = [point for point in loss_curve(trainer) if point[0] <= steps]  # not the profiled step
    case.timed("s_per_step", step_s, extra={"warmup_step_s": timer.samples[0], "loss_curve": curve,
                                            "gc_s": [c.seconds for c in collected[1:]]})
    case.timed("train_tokens_per_s", [t / s for t, s in zip(tokens, step_s)])
    if step_joules[1:]:  # GPUs with an NVML energy counter
        case.timed("energy_j_per_token", [j / t for j, t in zip(step_joules[1:], tokens)])
        case.timed("energy_j_per_step", step_joules[1:])
    if bench.source.loss_meaningful:
        case("initial_loss", curve[0][1])
        case("final_loss", final_loss(curve))
        reached = steps_to_target(curve, TARGET_LOSS)
        if reached is None:
            case.skip_metric("steps_to_target_loss", f"loss never went under {TARGET_LOSS} in {steps} steps")
        else:
            case("steps_to_target_loss", reached)
    else:
        for metric in ("initial_loss", "final_loss", "steps_to_target_loss"):
            case.skip_metric(metric, bench.source.why_no_loss)
    adapter_dir = tmp_path / "adapter"
    with case.phase("adapter save"):
        backend.save_adapter(loaded, adapter_dir)
    case("adapter_mb", adapter_size_mb(adapter_dir))
    case.profiled(why, per=1, unit="step")
    case("trainable_params_m", sum(p.numel() for p in loaded.model.parameters() if p.requires_grad) / 1e6)
    benchmark.extra_info.update({"s_per_step": step_s, "loss_curve": curve})
    with case.phase("unload"):
        backend.unload(loaded)


@pytest.mark.correctness
def test_resume(bench, backend, prepared, case, train_data, tmp_path):
    """The seed's "checkpoint recovery works": a run resumed from its mid-way checkpoint continues
    with the same losses as the run that was never interrupted."""
    from bench.telemetry.steps import StepClock, loss_curve

    steps = max(4, bench.workload.resume_steps)
    rank, (batch_size, grad_accum) = bench.profile.trainings[0]
    lora = LoraSettings(rank)
    settings = bench.workload.train_settings(batch_size, grad_accum, steps, tmp_path / "run", save_steps=steps // 2)

    with case.phase("load and LoRA"):
        first = backend.add_lora(backend.load(bench.source), lora)
    clock = StepClock(bench.device)
    with case.phase("trainer set-up"):
        trainer = backend.trainer(first, train_data(first.tokenizer, bench.workload.fixed_length), settings, [clock])
    with case.training("uninterrupted training", clock.seconds):
        trainer.train()
    uninterrupted = dict(loss_curve(trainer))
    del trainer  # it holds the model and its optimizer state: the second load must not sit beside them
    with case.phase("unload"):
        backend.unload(first)  # (seen on an H200, 20B replica: 28.0 GB peak against 15.0 GB for one training)

    with case.phase("load and LoRA"):
        second = backend.add_lora(backend.load(bench.source), lora)
    with case.phase("trainer set-up"):
        resumed_trainer = backend.trainer(second, train_data(second.tokenizer, bench.workload.fixed_length), settings, [])
    with case.phase("resumed training"):
        resumed_trainer.train(resume_from_checkpoint=str(tmp_path / "run" / f"checkpoint-{steps // 2}"))
    resumed = dict(loss_curve(resumed_trainer))
    del resumed_trainer
    with case.phase("unload"):
        backend.unload(second)

    after = [s for s in sorted(resumed) if s > steps // 2]
    assert after, "the resumed run logged no step after its checkpoint"
    gaps = [abs(resumed[s] - uninterrupted[s]) / max(abs(uninterrupted[s]), 1e-9) for s in after]
    case("resume_loss_delta", max(gaps), samples=gaps,
         extra={"uninterrupted": [uninterrupted[s] for s in after], "resumed": [resumed[s] for s in after]})
