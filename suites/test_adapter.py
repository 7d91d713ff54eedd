"""The seed's solved bug as a regression test: an adapter saved after training and loaded the
prescribed way (base model -> PeftModel.from_pretrained -> inference mode) must reproduce the
in-memory adapter's greedy outputs, and must differ from the base model's."""

import time

import pytest

from bench.backends import LoraSettings
from bench.data import inference_prompts

pytestmark = pytest.mark.suite("adapter")

NEW_TOKENS = 24
PROMPTS = 3


def test_adapter_roundtrip(bench, backend, prepared, case, train_data, tmp_path):
    from bench.telemetry.steps import StepClock  # transformers: not at collection

    lora = LoraSettings(bench.profile.lora_ranks[0])
    batch_size, grad_accum = bench.profile.train_batches[0]
    with case.phase("load and LoRA"):
        trained = backend.add_lora(backend.load(bench.source), lora)
    settings = bench.adapter_settings(batch_size, grad_accum, tmp_path / "run")
    clock = StepClock(bench.device)
    with case.phase("trainer set-up"):
        trainer = backend.trainer(trained, train_data(trained.tokenizer, bench.fixed_length), settings, [clock])
    started = time.perf_counter()
    trainer.train()
    warm_up = clock.seconds[0] if clock.seconds else 0.0  # this process's first step: its compilation
    case.add_phase("warm-up step", warm_up)
    case.add_phase("training", time.perf_counter() - started - warm_up)
    del trainer  # it holds the model and its optimizer state: unloading must free them before the next load
    prompts = inference_prompts(train_data.rows, trained.tokenizer, PROMPTS, "low")
    backend.for_inference(trained)
    with case.phase("generation"):
        in_memory = backend.generate(trained, prompts, NEW_TOKENS)
    with case.phase("adapter save"):
        backend.save_adapter(trained, tmp_path / "adapter")
    with case.phase("unload"):
        backend.unload(trained)

    with case.phase("load and LoRA"):
        base = backend.load(bench.source)
        backend.for_inference(base)
    with case.phase("generation"):
        base_out = backend.generate(base, prompts, NEW_TOKENS)
    with case.phase("load and LoRA"):
        reloaded = backend.load_adapter(base, tmp_path / "adapter")
    with case.phase("generation"):
        reloaded_out = backend.generate(reloaded, prompts, NEW_TOKENS)
    with case.phase("unload"):
        backend.unload(reloaded)

    equal, changed = reloaded_out == in_memory, reloaded_out != base_out
    decode = trained.tokenizer.decode
    case("adapter_roundtrip_equal", float(equal),
         extra={"in_memory": decode(in_memory[0]), "reloaded": decode(reloaded_out[0]), "base": decode(base_out[0])})
    case("adapter_changes_output", float(changed))
    assert equal, "the reloaded adapter's greedy outputs differ from the in-memory adapter's"
    assert changed, "the adapter does not change the base model's outputs: nothing was learned or applied"
