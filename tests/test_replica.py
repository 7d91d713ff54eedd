"""Replica checkpoints written straight from the model's tensors load as `save_pretrained`'s do."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from bench.models import replica, tiny  # noqa: E402
from bench.models.store import cache_root  # noqa: E402


@pytest.fixture
def small_config():
    return tiny.model_config(vocab_size=300)


def test_written_checkpoint_loads_as_the_model_built(tmp_path, small_config, monkeypatch):
    monkeypatch.setattr(replica, "SHARD_BYTES", 2_000_000)  # several shards from a small model
    meta = replica.write_replica(small_config, tmp_path / "w", "cpu", cache_root(), "small")
    shards = sorted((tmp_path / "w").glob("model-*.safetensors"))
    assert len(shards) > 1
    index = json.loads((tmp_path / "w" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {p.name for p in shards}

    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        built = transformers.GptOssForCausalLM(small_config)
    finally:
        torch.set_default_dtype(previous)
    built.save_pretrained(tmp_path / "reference")
    reference = json.loads((tmp_path / "reference" / "model.safetensors.index.json").read_text()
                           if (tmp_path / "reference" / "model.safetensors.index.json").exists() else "{}")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "reference" / "model.safetensors"), "pt") as f:
        reference_keys = set(f.keys())
    assert not reference or set(reference["weight_map"]) == reference_keys
    assert set(index["weight_map"]) == reference_keys

    loaded = transformers.GptOssForCausalLM.from_pretrained(tmp_path / "w", dtype=torch.bfloat16)
    expected = built.state_dict()
    for key, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, expected[key]), key
    assert meta["parameters"] == sum(p.numel() for p in built.parameters())
    assert meta["bytes"] == index["metadata"]["total_size"]
    assert json.loads((tmp_path / "w" / "build.json").read_text())["write_s"] >= 0
    assert len(transformers.AutoTokenizer.from_pretrained(tmp_path / "w")) >= small_config.vocab_size


def test_scratch_copy_goes_where_there_is_room_and_is_deleted(tmp_path, small_config, monkeypatch):
    monkeypatch.setattr(replica, "model_config", lambda name: small_config)
    monkeypatch.setattr(replica, "SHM", tmp_path / "shm")
    (tmp_path / "shm").mkdir()
    with replica.scratch_built("small", cache_root(), "cpu") as directory:
        assert directory.parent == tmp_path / "shm"
        assert (directory / "config.json").is_file()
    assert not directory.exists()

    monkeypatch.setattr(replica, "_room", lambda path, needed: False)
    with replica.scratch_built("small", cache_root(), "cpu") as directory:
        assert directory.parent == cache_root()
    assert not directory.exists()


def test_a_dead_process_scratch_copy_is_removed(tmp_path, small_config, monkeypatch):
    monkeypatch.setattr(replica, "model_config", lambda name: small_config)
    monkeypatch.setattr(replica, "SHM", tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f"{replica.SCRATCH_PREFIX}{dead.stdout.strip()}-replica-x-abc"
    live = tmp_path / f"{replica.SCRATCH_PREFIX}{os.getpid()}-replica-y-abc"
    orphan.mkdir()
    live.mkdir()
    with replica.scratch_built("small", cache_root(), "cpu"):
        pass
    assert not orphan.exists()
    assert live.exists()


def test_a_copy_built_ahead_for_this_run_is_taken_once_finished_and_deleted_after(tmp_path, small_config,
                                                                                    monkeypatch):
    """`build_ahead` (a process of the run's own, while the first child imports its engine) makes
    the copy the preparation then takes instead of writing one; one for a run that is gone is not
    taken; what no preparation took is removed at the run's end."""
    monkeypatch.setattr(replica, "model_config", lambda name: small_config)
    monkeypatch.setattr(replica, "SHM", tmp_path / "shm")
    (tmp_path / "shm").mkdir()
    root = tmp_path / "cache"
    replica.build_ahead("small", str(root), "cpu", os.getpid())
    [ahead] = (tmp_path / "shm").glob(f"{replica.SCRATCH_PREFIX}{os.getpid()}-*-{replica.AHEAD}-*")
    replica.build_ahead("small", str(root), "cpu", os.getpid())  # built already: not again
    assert len(list((tmp_path / "shm").iterdir())) == 1
    written = []
    monkeypatch.setattr(replica, "write_replica", lambda *args: written.append(args))
    with replica.scratch_built("small", root, "cpu") as directory:
        assert directory == ahead and (directory / "build.json").is_file()
    assert not ahead.exists() and not written

    with replica.scratch_built("small", root, "cpu") as directory:  # none ahead: its own copy
        assert directory != ahead
    assert len(written) == 1

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / "shm" / f"{replica.SCRATCH_PREFIX}{dead.stdout.strip()}-{replica.build_dir('small', root).name}-{replica.AHEAD}-x"
    gone.mkdir()
    (gone / "build.json").write_text("{}")
    with replica.scratch_built("small", root, "cpu") as directory:
        assert directory != gone
    assert not gone.exists()  # an orphan, removed

    mine = tmp_path / "shm" / f"{replica.SCRATCH_PREFIX}{os.getpid()}-{replica.build_dir('small', root).name}-{replica.AHEAD}-y"
    other = tmp_path / "shm" / f"{replica.SCRATCH_PREFIX}1-{replica.build_dir('small', root).name}-{replica.AHEAD}-z"
    mine.mkdir()
    other.mkdir()
    replica.remove_built_ahead(os.getpid(), root)
    assert not mine.exists() and other.exists()


def test_unsloth_builds_ahead_only_a_replica_it_will_quantize_from_scratch(tmp_path, monkeypatch):
    from bench.backends.unsloth import UnslothBackend
    from bench.models import resolve_model

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    backend = UnslothBackend("cuda:0")
    function, args = backend.build_ahead(resolve_model("replica:gpt-oss-20b"))
    assert function is replica.build_ahead and args == ("gpt-oss-20b", str(tmp_path), "cuda:0", os.getpid())
    assert backend.build_ahead(resolve_model("tiny-gpt-oss")) is None
    assert UnslothBackend("cuda:0", load_in_4bit=False).build_ahead(resolve_model("replica:gpt-oss-20b")) is None
    done = replica.build_dir("gpt-oss-20b", tmp_path, "unsloth-4bit")
    done.mkdir()
    (done / "build.json").write_text("{}")
    assert backend.build_ahead(resolve_model("replica:gpt-oss-20b")) is None  # quantized already


@pytest.mark.parametrize("staging", [replica.STAGING_BYTES, 7])  # 7 bytes: tensors cross the buffer's edge
def test_shards_are_written_as_safetensors_reads_them(tmp_path, monkeypatch, staging):
    """The replica's own safetensors writer (bench.models.replica._write_shards): every dtype a
    state dict holds, a scalar, a transposed (non-contiguous) tensor, the metadata, staged
    through a buffer larger or smaller than the tensors."""
    monkeypatch.setattr(replica, "STAGING_BYTES", staging)
    from safetensors import safe_open
    from safetensors.torch import load_file

    shards = [{"a": torch.randn(3, 5, dtype=torch.bfloat16), "b": torch.arange(7), "s": torch.tensor(2.5)},
              {"m": torch.rand(4, 4) > 0.5, "t": torch.randn(6, 4).t(), "h": torch.randn(2, 3, dtype=torch.float16),
               "q": torch.randint(-5, 5, (9,), dtype=torch.int8)}]
    paths = [tmp_path / "one.safetensors", tmp_path / "two.safetensors"]
    replica._write_shards(shards, paths)
    for shard, path in zip(shards, paths):
        read = load_file(str(path))
        assert set(read) == set(shard)
        for key, tensor in shard.items():
            assert read[key].dtype == tensor.dtype and torch.equal(read[key], tensor), key
        with safe_open(str(path), "pt") as f:
            assert f.metadata() == {"format": "pt"}


def test_save_pretrained_writes_through_the_staged_writer_and_loads_back(tmp_path, small_config, monkeypatch):
    """`staged_saves` replaces only the file writing of transformers' save: the same files, the
    same tensors read back, and safetensors' own writer back in place afterwards."""
    from transformers import GptOssForCausalLM, modeling_utils

    monkeypatch.setattr(replica, "STAGING_BYTES", 4096)
    torch.manual_seed(0)
    model = GptOssForCausalLM(small_config)
    before = modeling_utils.safe_save_file
    with replica.staged_saves() as staged:
        model.save_pretrained(tmp_path / "staged", max_shard_size="1MB")
    assert modeling_utils.safe_save_file is before
    model.save_pretrained(tmp_path / "plain", max_shard_size="1MB")
    files = sorted(p.name for p in (tmp_path / "staged").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "plain").iterdir())
    assert len(staged) == len([f for f in files if f.endswith(".safetensors")]) > 1
    loaded = GptOssForCausalLM.from_pretrained(tmp_path / "staged")
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key


def test_a_replica_borrows_the_tiny_tokenizer_without_building_the_tiny_model(tmp_path):
    """Trained alone (seconds) it is the built model's tokenizer, token for token."""
    built = tiny.ensure_built(cache_root())
    alone = tiny.tokenizer_dir(tmp_path)
    assert not list(tmp_path.rglob("*.safetensors"))  # no model pre-trained for it
    assert json.loads((alone / "tokenizer.json").read_text()) == json.loads((built / "tokenizer.json").read_text())
    assert tiny.tokenizer_dir(cache_root()) == built  # a built model's own is used where there is one


def test_compilers_caches_go_under_the_cache_root_unless_set(tmp_path, monkeypatch):
    from bench.models.store import COMPILE_CACHES, keep_compile_caches

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    for variable in COMPILE_CACHES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TRITON_CACHE_DIR", "/mine/triton")
    keep_compile_caches()
    assert os.environ["TRITON_CACHE_DIR"] == "/mine/triton"  # the user's choice stands
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "compile" / "inductor")
    # the load breakdown tells Unsloth's compiled modules by this directory name
    assert os.environ["UNSLOTH_COMPILE_LOCATION"].endswith("unsloth_compiled_cache")
