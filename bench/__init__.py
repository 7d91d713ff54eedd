"""Benchmark and regression harness for LoRA fine-tuning and serving of GPT-OSS models."""

__version__ = "0.1.0"
