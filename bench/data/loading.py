"""Where training rows come from, and how they become text for SFT."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bench.data.synthetic import make_rows
from bench.errors import BenchError

if TYPE_CHECKING:
    import datasets

BUILTIN = "builtin"
BUILTIN_ROWS = 3000
_LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


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


def format_conversations(ds: "datasets.Dataset", tokenizer) -> "datasets.Dataset":
    """Add a 'text' column rendered with the tokenizer's chat template (the row's effort if it has one)."""

    def render(row: dict) -> dict:
        effort = row.get("reasoning_effort") or "medium"
        text = tokenizer.apply_chat_template(row["messages"], tokenize=False, reasoning_effort=effort)
        return {"text": text}

    return ds.map(render, desc="chat template")
