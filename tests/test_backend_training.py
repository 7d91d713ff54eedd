"""The hf engine's trainer on the CPU: the training set is prepared once, then read back."""

import datasets
import pytest

from bench.backends import LoraSettings, TrainSettings, get_backend
from bench.data import TrainingData, load_training_dataset
from bench.models import resolve_model


@pytest.fixture
def map_passes(monkeypatch) -> list[str]:
    """The `desc` of every `datasets.Dataset.map` pass from now on: what was rendered or tokenized."""
    passes: list[str] = []
    map_rows = datasets.Dataset.map

    def counted(self, *args, **kwargs):
        passes.append(kwargs.get("desc") or "")
        return map_rows(self, *args, **kwargs)

    monkeypatch.setattr(datasets.Dataset, "map", counted)
    return passes


def test_a_second_trainer_reuses_the_prepared_training_set(tmp_path, monkeypatch, map_passes):
    """SFTTrainer tokenizes the whole set each time it is built; the engine keeps the set the first
    trainer prepared and hands it to the next one (in any process): same rows, no second tokenizing."""
    backend, source = get_backend("hf", "cpu"), resolve_model("tiny-gpt-oss")
    backend.prepare(source)
    loaded = backend.add_lora(backend.load(source), LoraSettings(8))
    raw = TrainingData(load_training_dataset("builtin"))(loaded.tokenizer)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))  # prepared sets kept there, none yet
    passes = map_passes

    def trainer(max_seq_length: int):
        passes.clear()
        settings = TrainSettings(2, 1, 2, 1e-3, max_seq_length, tmp_path / str(max_seq_length))
        return backend.trainer(loaded, raw, settings, [])

    first = trainer(1024)
    assert any(p.startswith("Tokenizing") for p in passes)
    second = trainer(1024)
    assert not any(p.startswith("Tokenizing") for p in passes)
    assert second.train_dataset["input_ids"] == first.train_dataset["input_ids"]
    assert second.train_dataset["labels"] == first.train_dataset["labels"]
    shorter = trainer(256)  # another length: prepared for it, truncated to it
    assert any(p.startswith("Tokenizing") for p in passes)
    assert max(len(ids) for ids in shorter.train_dataset["input_ids"]) <= 256


def test_the_prompt_completion_set_is_rendered_once_for_every_process(tmp_path, map_passes):
    """Rendering the chat template over 3,000 conversations cost every isolated process that trains
    a second or more: the first one stores the rendered set, the next (a new `TrainingData`, as in
    another process) reads it back with the same rows and fingerprint; a damaged copy is made again."""
    backend, source = get_backend("hf", "cpu"), resolve_model("tiny-gpt-oss")
    backend.prepare(source)
    tokenizer = backend.load(source).tokenizer
    rows = load_training_dataset("builtin")
    made = TrainingData(rows)(tokenizer)
    renders = map_passes
    renders.clear()
    first = TrainingData(rows, tmp_path)(tokenizer)
    assert renders == ["prompt/completion"]
    second = TrainingData(rows, tmp_path)(tokenizer)
    assert renders == ["prompt/completion"]  # read back, not rendered again
    assert second["prompt"] == first["prompt"] == made["prompt"]
    assert second["completion"] == made["completion"] and second._fingerprint == first._fingerprint
    [stored] = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    for f in stored.glob("*.arrow"):
        f.write_bytes(b"not arrow")
    again = TrainingData(rows, tmp_path)(tokenizer)
    assert renders == ["prompt/completion"] * 2 and again["completion"] == made["completion"]


def test_an_unwritable_cache_still_gives_the_training_set(tmp_path):
    backend, source = get_backend("hf", "cpu"), resolve_model("tiny-gpt-oss")
    backend.prepare(source)
    tokenizer = backend.load(source).tokenizer
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    rows = load_training_dataset("builtin")
    assert TrainingData(rows, blocked / "sets")(tokenizer)["completion"] == TrainingData(rows)(tokenizer)["completion"]
