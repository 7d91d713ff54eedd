"""The seed's solved bug as a regression test: an adapter saved after training and loaded the
prescribed way (base model -> PeftModel.from_pretrained -> inference mode) must reproduce the
in-memory adapter's next-token distributions along its greedy output, and the base model's
greedy choices must differ from the adapter's (bench.analysis.adapter says why distributions)."""

import math

import pytest

from bench.backends import LoraSettings
from bench.analysis.adapter import RELOAD_GAP_MAX, round_trip
from bench.data import inference_prompts
from bench.telemetry.tokens import NextTokenScores

pytestmark = [pytest.mark.suite("adapter"), pytest.mark.correctness]

NEW_TOKENS = 24
PROMPTS = 3


def test_adapter_roundtrip(bench, backend, prepared, case, train_data, tmp_path):
    from bench.telemetry.steps import StepClock  # transformers: not at collection

    rank, (batch_size, grad_accum) = bench.profile.trainings[0]
    lora = LoraSettings(rank)
    with case.phase("load and LoRA"):
        trained = backend.add_lora(backend.load(bench.source), lora)
    settings = bench.workload.adapter_settings(batch_size, grad_accum, tmp_path / "run")
    clock = StepClock(bench.device)
    with case.phase("trainer set-up"):
        trainer = backend.trainer(trained, train_data(trained.tokenizer, bench.workload.fixed_length), settings, [clock])
    with case.training("training", clock.seconds):
        trainer.train()
    del trainer  # it holds the model and its optimizer state: unloading must free them before the next load
    prompts = inference_prompts(train_data.rows, trained.tokenizer, PROMPTS, "low")
    backend.for_inference(trained)
    own = NextTokenScores()
    with case.phase("generation"):
        in_memory = backend.generate(trained, prompts, NEW_TOKENS, [own])
    with case.phase("adapter save"):
        backend.save_adapter(trained, tmp_path / "adapter")
    with case.phase("unload"):
        backend.unload(trained)

    # the base model and the reloaded adapter, each on the in-memory adapter's continuation
    base_scores, reloaded_scores = NextTokenScores(follow=in_memory), NextTokenScores(follow=in_memory)
    with case.phase("load and LoRA"):
        base = backend.load(bench.source)
        backend.for_inference(base)
    with case.phase("generation"):
        backend.generate(base, prompts, NEW_TOKENS, [base_scores])
    with case.phase("load and LoRA"):
        reloaded = backend.load_adapter(base, tmp_path / "adapter")
    with case.phase("generation"):
        backend.generate(reloaded, prompts, NEW_TOKENS, [reloaded_scores])
    with case.phase("unload"):
        backend.unload(reloaded)

    trip = round_trip(own.as_array(), reloaded_scores.as_array(), base_scores.as_array())
    case("adapter_changes_output", float(trip.changed))
    if math.isfinite(trip.gap):
        case("adapter_reload_gap", trip.gap, extra={"greedy_agreement": trip.agreement, "limit": RELOAD_GAP_MAX,
                                                     "in_memory": trained.tokenizer.decode(in_memory[0])})
    else:
        case.skip_metric("adapter_reload_gap", "the adapter did not move the base model's distributions at all")
    case("adapter_roundtrip_equal", float(trip.reproduced))
    assert trip.changed, "the adapter does not change the base model's outputs: nothing was learned or applied"
    assert trip.reproduced, (f"the reloaded adapter's next-token distributions differ from the in-memory adapter's "
                             f"by {trip.gap:.1%} of the adapter's own effect (limit {RELOAD_GAP_MAX:.0%})")
