"""Does pytest hosting a round slow it, and which of its pieces? One interpreter loads the model once,
then alternates, in a rotating order, the plain script's round (bench/fidelity/plain.py) run in
different ways: directly; as the one test of `pytest.main()` in this process, with pytest's optional
plugins on or off; 30 frames deeper; right after a `pytest.main()` that ran an empty test. Beside each
round: the speed probes, the interpreter's audit events (imports, frame walks, ctypes calls), the
collector's seconds. Before the rounds: the warnings one generation raises and the warning-filter
mutations it makes.

    python docs/measurements/pytest-hosting/hosted.py SPEC OUT [ROUNDS]

SPEC is a plain-script spec (`bench.fidelity.crosscheck.plain_spec`, made in another process so
that this one imports nothing of the harness); HOSTED_WAYS picks the ways (comma-separated, WAYS'
names), PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 keeps installed plugins out. OUT is rewritten after every
round.
"""

from __future__ import annotations

import builtins
import collections
import gc
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "bench", "fidelity"))  # plain.py alone, not the harness's package
import plain  # noqa: E402

TEST = '''
import builtins
def test_round(request):
    builtins._hosted_out.append(builtins._hosted_way(request))
'''
QUIET = ["-s", "-p", "no:logging", "-p", "no:faulthandler", "-p", "no:warnings",
         "-p", "no:unraisableexception", "-p", "no:threadexception"]
# pytest's arguments per hosted way; "bare", "deep", "post", "thread" run outside a test; inside it,
# around the round, "pytest-off" switches capture, pytest's log handlers and faulthandler off,
# "pytest-thread" runs it on a new thread, "pytest-noenv" unsets PYTEST_CURRENT_TEST
WAYS = {"pytest": [], "pytest-s": ["-s"], "pytest-nolog": ["-p", "no:logging"],
        "pytest-nofh": ["-p", "no:faulthandler"], "pytest-nowarn": ["-p", "no:warnings"],
        "pytest-min": QUIET, "pytest-minplain": QUIET + ["--assert=plain"], "pytest-off": [],
        "pytest-thread": [], "pytest-noenv": []}
DEPTH = 30  # about the frames pytest puts between its main() and a test


class Watch:
    """The audit events and the collector's seconds of one round: what it asked of the interpreter."""

    def __init__(self) -> None:
        self.on, self.events, self.gc_s, self.gc_started = False, collections.Counter(), [0.0] * 3, 0.0
        sys.addaudithook(self._audit)
        gc.callbacks.append(self._gc)

    def _audit(self, event: str, args) -> None:
        if self.on:
            self.events[event] += 1

    def _gc(self, phase: str, info: dict) -> None:
        if not self.on:
            return
        if phase == "start":
            self.gc_started = time.perf_counter()
        else:
            self.gc_s[info["generation"]] += time.perf_counter() - self.gc_started

    def __call__(self, work) -> dict:
        self.events, self.gc_s, self.on = collections.Counter(), [0.0] * 3, True
        try:
            result = work()
        finally:
            self.on = False
        return {**result, "imports": self.events["import"], "events": dict(self.events.most_common(25)),
                "gc_s": self.gc_s}


def count_warnings(call) -> dict:
    """Warnings one generation raises (all, under 'always') and the filter mutations it makes: a
    mutation empties every module's warning registry, so each later warning walks every filter."""
    import warnings

    sites = collections.Counter()
    mutated = warnings._filters_mutated

    def counted() -> None:
        frame = sys._getframe(2)
        sites[f"{frame.f_code.co_filename}:{frame.f_lineno}"] += 1
        mutated()
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        warnings._filters_mutated = counted
        try:
            call()
        finally:
            warnings._filters_mutated = mutated
    return {"filters": len(warnings.filters), "warnings": len(got), "mutations": sum(sites.values()),
            "kinds": collections.Counter(f"{w.category.__name__}: {str(w.message)[:100]}" for w in got).most_common(10),
            "mutation_sites": sites.most_common(10)}


def switched_off(request, work):
    """Inside the test, what a harness could switch off around its timed round: capture, pytest's
    log handlers, faulthandler."""
    import faulthandler
    import logging

    root = logging.getLogger()
    handlers = root.handlers[:]
    root.handlers = [h for h in handlers if not type(h).__module__.startswith("_pytest")]
    enabled = faulthandler.is_enabled()
    faulthandler.disable()
    try:
        with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
            return work()
    finally:
        root.handlers = handlers
        if enabled:
            faulthandler.enable(file=sys.stderr)


def in_thread(work):
    """The round on a thread of its own: a fresh, shallow stack with none of the caller's frames."""
    import threading

    done: list = []
    thread = threading.Thread(target=lambda: done.append(work()))
    thread.start()
    thread.join()
    return done[0]


def without_test_variable(work):
    """The round with PYTEST_CURRENT_TEST unset, as outside a test."""
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        return work()
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved


def load(spec: dict):
    if spec["engine"] == "unsloth":
        import unsloth  # noqa: F401  (first, as a user's script imports it)
    import torch

    script = plain.Script(spec, torch)
    model, tokenizer, load_s = script.timed_load()
    if spec["engine"] == "unsloth":
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(model)
    else:
        model.eval()
    tokenizer.padding_side = "left"
    return torch, script, model, tokenizer, load_s


def main(spec_path: str, out_path: str, rounds: int) -> None:
    import pytest

    with open(spec_path) as fh:
        spec = json.load(fh)
    torch, script, model, tokenizer, load_s = load(spec)
    point = spec["generate"][0]
    prompts, new_tokens = script.prompts(tokenizer, point["conversations"], point["effort"]), point["new_tokens"]
    script.timed_generate(model, tokenizer, prompts, new_tokens)  # warm-up
    warned = count_warnings(lambda: script.timed_generate(model, tokenizer, prompts, new_tokens))
    watch = Watch()

    def round_() -> dict:
        probes = plain.speed_probes(torch, spec["device"])
        ttft, decode, _ = script.plain_round(model, tokenizer, prompts, new_tokens)
        return {"ttft_s": ttft, "decode_tok_s": decode, **probes}

    def deep(level: int = DEPTH) -> dict:
        return deep(level - 1) if level else watch(round_)

    folder = os.path.join(os.path.dirname(os.path.abspath(out_path)), "hosted-test")
    os.makedirs(folder, exist_ok=True)
    test_file = os.path.join(folder, "test_hosted.py")
    with open(test_file, "w") as fh:
        fh.write(TEST)
    base = ["-q", "-p", "no:cacheprovider", "--import-mode=importlib", "--rootdir", folder]

    def hosted(way: str) -> dict | None:
        builtins._hosted_out = []
        builtins._hosted_way = {"post": lambda request: None,
                                "pytest-off": lambda request: switched_off(request, lambda: watch(round_)),
                                "pytest-thread": lambda request: in_thread(lambda: watch(round_)),
                                "pytest-noenv": lambda request: without_test_variable(lambda: watch(round_)),
                                }.get(way, lambda request: watch(round_))
        pytest.main(base + WAYS.get(way, []) + [test_file])
        return builtins._hosted_out[0]

    ways = os.environ.get("HOSTED_WAYS", "bare,pytest").split(",")
    out = {"load_s": load_s, "warnings": warned, **{way: [] for way in ways}}
    for r in range(rounds):
        for way in ways[r % len(ways):] + ways[:r % len(ways)]:
            if way == "bare":
                out[way].append(watch(round_))
            elif way == "thread":
                out[way].append(in_thread(lambda: watch(round_)))
            elif way == "deep":
                out[way].append(deep())
            elif way == "post":
                hosted(way)
                out[way].append(watch(round_))
            else:
                out[way].append(hosted(way))
        print(r, {way: round(out[way][-1]["decode_tok_s"], 3) for way in ways}, flush=True)
        with open(out_path, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 8)
