"""Training data: the bundled synthetic set, a local file, or a hub name from the user's cache."""

from bench.data.loading import TrainingData, chat_requests, inference_prompts, load_training_dataset, to_prompt_completion

__all__ = ["TrainingData", "chat_requests", "load_training_dataset", "to_prompt_completion", "inference_prompts"]
