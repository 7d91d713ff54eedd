"""The hf engine's trainer on the CPU: the training set is prepared once, then read back."""

import datasets

from bench.backends import LoraSettings, TrainSettings, get_backend
from bench.data import TrainingData, load_training_dataset
from bench.models import resolve_model


def test_a_second_trainer_reuses_the_prepared_training_set(tmp_path, monkeypatch):
    """SFTTrainer tokenizes the whole set each time it is built; the engine keeps the set the first
    trainer prepared and hands it to the next one (in any process): same rows, no second tokenizing."""
    backend, source = get_backend("hf", "cpu"), resolve_model("tiny-gpt-oss")
    backend.prepare(source)
    loaded = backend.add_lora(backend.load(source), LoraSettings(8))
    raw = TrainingData(load_training_dataset("builtin"))(loaded.tokenizer)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))  # prepared sets kept there, none yet
    passes: list[str] = []
    map_rows = datasets.Dataset.map

    def counted(self, *args, **kwargs):
        passes.append(kwargs.get("desc") or "")
        return map_rows(self, *args, **kwargs)

    monkeypatch.setattr(datasets.Dataset, "map", counted)

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
