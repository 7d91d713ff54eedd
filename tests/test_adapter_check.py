"""The adapter round trip's verdict (bench.analysis.adapter) on the tiny model: a right reload reads
0, one with its B matrices halved far more than the limit (0.68), none at all 1; a near tie does
not matter."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from bench.analysis.adapter import RELOAD_GAP_MAX, round_trip, total_variation
from bench.backends import LoraSettings, get_backend
from bench.data import inference_prompts, load_training_dataset
from bench.models import resolve_model
from bench.telemetry.tokens import NextTokenScores


def test_a_flipped_near_tie_is_not_a_different_adapter():
    """Two models whose distributions differ by rounding pick different greedy tokens at a near tie:
    greedy outputs differ from there on, the distributions on the same prefix barely do."""
    base = np.array([[[0.1, 0.45, 0.45]]])
    trained = np.array([[[0.05, 0.4751, 0.4749]]])
    reloaded = np.array([[[0.05, 0.4749, 0.4751]]])  # argmax flipped
    trip = round_trip(trained, reloaded, base)
    assert trip.agreement == 0.0 and trip.gap == pytest.approx(0.0002 / 0.05) and trip.reproduced
    assert trip.changed is False  # the base's greedy choice was that of the trained model at this position
    assert round_trip(trained, base, base).gap == pytest.approx(1.0) and not round_trip(trained, base, base).reproduced
    assert total_variation(base, base) == 0.0


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """The tiny model with a LoRA adapter whose B matrices are random (an untrained adapter changes
    nothing), its distributions along its own greedy output, and the adapter saved."""
    backend, source = get_backend("hf", "cpu"), resolve_model("tiny-gpt-oss")
    backend.prepare(source)
    torch.manual_seed(0)
    trained = backend.add_lora(backend.load(source), LoraSettings(8))
    with torch.no_grad():
        for name, p in trained.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    prompts = inference_prompts(load_training_dataset("builtin"), trained.tokenizer, 3, "low")
    backend.for_inference(trained)
    own = NextTokenScores()
    out = backend.generate(trained, prompts, 12, [own])
    path = tmp_path_factory.mktemp("adapter")
    backend.save_adapter(trained, path)
    backend.unload(trained)
    return backend, source, prompts, out, own.as_array(), path


def _scores(backend, source, prompts, out, adapter_dir=None):
    model = backend.load(source)
    backend.for_inference(model)
    if adapter_dir is not None:
        model = backend.load_adapter(model, adapter_dir)
    scores = NextTokenScores(follow=out)
    followed = backend.generate(model, prompts, len(out[0]), [scores])
    assert followed == out  # teacher forcing: every model walks the in-memory adapter's continuation
    return scores.as_array()


def test_the_reload_is_judged_by_distributions_on_the_same_prefixes(adapter, tmp_path):
    backend, source, prompts, out, in_memory, path = adapter
    base = _scores(backend, source, prompts, out)
    right = round_trip(in_memory, _scores(backend, source, prompts, out, path), base)
    assert right.reproduced and right.gap < 1e-3 and right.changed and right.agreement == 1.0
    weights = load_file(str(path / "adapter_model.safetensors"))
    half = tmp_path / "half"
    half.mkdir()
    (half / "adapter_config.json").write_text((path / "adapter_config.json").read_text())
    save_file({k: v * 0.5 if "lora_B" in k else v for k, v in weights.items()}, str(half / "adapter_model.safetensors"))
    weak = round_trip(in_memory, _scores(backend, source, prompts, out, half), base)
    # greedy outputs stay equal here (agreement 1.0): the check they made would have passed it
    assert not weak.reproduced and 0.25 < weak.gap < 0.9 and weak.gap > 5 * RELOAD_GAP_MAX
