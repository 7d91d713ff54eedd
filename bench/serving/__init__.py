"""Serving under load: an OpenAI-compatible endpoint (given, or `transformers serve` started by the
harness) driven by a streaming load generator. Pure figures live in `bench.analysis.serving`."""
