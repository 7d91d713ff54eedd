"""Training data: the bundled synthetic set, a local file, or a hub name from the user's cache."""

from bench.data.loading import load_training_dataset, format_conversations

__all__ = ["load_training_dataset", "format_conversations"]
