"""Where training rows come from, and how they become text for SFT."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from bench.data.synthetic import make_rows
from bench.errors import BenchError

if TYPE_CHECKING:
    import datasets

BUILTIN = "builtin"
BUILTIN_ROWS = 3000
# Bump when to_prompt_completion or _joined changes what it makes: stored sets are keyed by it.
FORMAT_VERSION = 1
_LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_dataset(spec: str) -> None:
    """What can be told of --dataset before a run starts, without loading it: a local file that
    is not there or not in a format read here, a hub dataset that neither the HF hub cache nor
    `datasets`' own cache holds (loading it would download it). Its rows are checked when loaded."""
    if spec == BUILTIN:
        return
    path = Path(spec).expanduser()
    if path.suffix in _LOCAL_FORMATS:
        if not path.is_file():
            raise BenchError(f"--dataset {spec}: no such file; give an existing .json/.jsonl/.csv/.parquet file")
        return
    if path.exists() or not _HUB_NAME.match(spec):
        raise BenchError(f"--dataset {spec}: give 'builtin', a .json/.jsonl/.csv/.parquet file, "
                         "or a hub dataset name like org/name")
    from huggingface_hub.constants import HF_HOME, HF_HUB_CACHE
    from huggingface_hub.file_download import repo_folder_name

    hub = Path(HF_HUB_CACHE) / repo_folder_name(repo_id=spec, repo_type="dataset")
    processed = Path(os.environ.get("HF_DATASETS_CACHE", Path(HF_HOME) / "datasets")) / spec.replace("/", "___")
    if not hub.is_dir() and not processed.is_dir():
        raise BenchError(f"--dataset {spec}: not in the HF cache ({HF_HUB_CACHE}): loading it would download "
                         f"it; run `hf download --repo-type dataset {spec}` first, or give a local file")


def load_training_dataset(spec: str = BUILTIN, rows: int | None = None) -> "datasets.Dataset":
    """The bundled synthetic set, a local json/jsonl/csv/parquet file, or a hub dataset name.

    A hub name is read through `datasets`, which uses the user's cache; with HF_HUB_OFFLINE=1 it
    never touches the network.
    """
    import datasets

    if spec == BUILTIN:
        ds = datasets.Dataset.from_list(make_rows(rows or BUILTIN_ROWS))
    elif Path(spec).suffix in _LOCAL_FORMATS:
        if not Path(spec).is_file():
            raise BenchError(f"--dataset {spec}: no such file; give an existing .json/.jsonl/.csv/.parquet file")
        ds = datasets.load_dataset(_LOCAL_FORMATS[Path(spec).suffix], data_files=spec, split="train")
    else:
        try:
            ds = datasets.load_dataset(spec, split="train")
        except Exception as exc:  # datasets raises many types for a missing or unreachable set
            raise BenchError(f"--dataset {spec}: could not load it ({type(exc).__name__}); "
                             "use 'builtin', a local file, or a dataset already in your HF cache") from exc
    if "messages" not in ds.column_names:
        raise BenchError(f"--dataset {spec}: no 'messages' column; rows must be chat conversations "
                         "as in HuggingFaceH4/Multilingual-Thinking")
    if rows is not None and len(ds) > rows:
        ds = ds.select(range(rows))
    return ds


def _effort(row: dict) -> str:
    return row.get("reasoning_effort") or "medium"


def to_prompt_completion(ds: "datasets.Dataset", tokenizer) -> "datasets.Dataset":
    """Split each conversation into the prompt (everything before the last assistant turn, with
    the generation prompt) and the completion (that turn: analysis and final channels).

    trl then trains on the completion only, as a chat fine-tune should: the loss is the model's
    answer, not the system boilerplate it is given.
    """

    def split(row: dict) -> dict:
        prompt = tokenizer.apply_chat_template(row["messages"][:-1], tokenize=False, add_generation_prompt=True,
                                               reasoning_effort=_effort(row))
        full = tokenizer.apply_chat_template(row["messages"], tokenize=False, reasoning_effort=_effort(row))
        if not full.startswith(prompt):
            raise BenchError("the tokenizer's chat template renders a prompt that is not a prefix of the "
                             "whole conversation; prompt/completion training needs one that is")
        return {"prompt": prompt, "completion": full[len(prompt):]}

    return ds.map(split, remove_columns=ds.column_names, desc="prompt/completion")


def inference_prompts(ds: "datasets.Dataset", tokenizer, n: int, effort: str) -> list[str]:
    """`n` different user turns rendered up to the assistant's turn, at the given reasoning effort."""
    rows = [ds[i % len(ds)] for i in range(n)]
    return [tokenizer.apply_chat_template(
        [m for m in row["messages"] if m["role"] != "assistant"], tokenize=False, add_generation_prompt=True,
        reasoning_effort=effort) for row in rows]


def chat_requests(ds: "datasets.Dataset", n: int) -> list[list[dict]]:
    """`n` conversations up to the user's turn, as an OpenAI chat request's `messages`."""
    rows = [ds[i % len(ds)] for i in range(n)]
    return [[{"role": m["role"], "content": m["content"]} for m in row["messages"] if m["role"] != "assistant"]
            for row in rows]


class TrainingData:
    """The run's rows, and their prompt/completion form per chat template (made once each).

    Rendering the chat template over the bundled 3,000 conversations takes 1.2 s on the 2-core CPU
    (joining them into fixed-length rows for a replica tokenizes them all, longer), and every
    isolated process that trains did it again: with `cache_dir` the result is kept on disk, keyed
    by the rows' content fingerprint (deterministic across processes), the tokenizer and the length,
    and read back in milliseconds. It keeps its fingerprint, so the trainer's own cache of the
    tokenized set finds it too."""

    def __init__(self, rows: "datasets.Dataset", cache_dir: Path | None = None) -> None:
        self.rows = rows
        self.cache_dir = cache_dir
        self._by_template: dict[str, "datasets.Dataset"] = {}

    def __call__(self, tokenizer, fixed_length: int | None = None) -> "datasets.Dataset":
        """Prompt/completion rows; with `fixed_length`, plain text rows of exactly that many tokens
        (conversations joined end to end), for models whose loss means nothing and whose step time
        should reflect full-length sequences, as the seed's 1024-token training did."""
        key = (tokenizer.chat_template or "") + f"|{fixed_length}"
        if key not in self._by_template:
            self._by_template[key] = self._stored_or_made(tokenizer, fixed_length)
        return self._by_template[key]

    def _made(self, tokenizer, fixed_length: int | None) -> "datasets.Dataset":
        pairs = to_prompt_completion(self.rows, tokenizer)
        return pairs if fixed_length is None else _joined(pairs, tokenizer, fixed_length)

    def _stored_or_made(self, tokenizer, fixed_length: int | None) -> "datasets.Dataset":
        path = self._path(tokenizer, fixed_length)
        if path is None:
            return self._made(tokenizer, fixed_length)
        import datasets

        def stored() -> "datasets.Dataset | None":
            try:
                return datasets.load_from_disk(str(path), keep_in_memory=True)
            except (OSError, ValueError):  # not there, or damaged
                return None

        found = stored() if path.is_dir() else None
        if found is not None:
            return found
        made = self._made(tokenizer, fixed_length)
        store_dataset(made, path)
        again = stored()  # read back by the process that made it too: one fingerprint for every process
        return made if again is None else again

    def _path(self, tokenizer, fixed_length: int | None) -> Path | None:
        fingerprint = getattr(self.rows, "_fingerprint", None)
        if self.cache_dir is None or fingerprint is None:
            return None
        import datasets

        return self.cache_dir / stored_set_name(FORMAT_VERSION, fingerprint, tokenizer.name_or_path, len(tokenizer),
                                                tokenizer.chat_template or "", fixed_length, datasets.__version__)


def stored_set_name(*key: object) -> str:
    """The directory name of a stored set: a digest of everything that decides its content."""
    return hashlib.sha256("|".join(map(str, key)).encode()).hexdigest()[:20]


def store_dataset(dataset: "datasets.Dataset", path: Path) -> None:
    """Written beside, then renamed: processes preparing the same set at once leave one copy."""
    scratch = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}-"))
        dataset.save_to_disk(str(scratch))
        scratch.rename(path)
    except OSError:  # another process stored it first, a full disk, a read-only cache: go on, uncached
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _joined(pairs: "datasets.Dataset", tokenizer, length: int) -> "datasets.Dataset":
    import datasets

    texts, current, current_len = [], [], 0
    for row in pairs:
        text = row["prompt"] + row["completion"]
        current.append(text)
        current_len += len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if current_len > length:  # trl truncates each row to max_length = `length` tokens
            texts.append("".join(current))
            current, current_len = [], 0
    return datasets.Dataset.from_dict({"text": texts})
