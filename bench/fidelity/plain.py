"""A user's own script: load, train and generate with the engine alone, timed with a clock.

The cross-check (`bench.fidelity.crosscheck`) runs this file as a script in a fresh interpreter,
`python plain.py SPEC.json OUT.json`, beside repeats of the harness's own cases, and holds the
harness's figures against its figures. It imports nothing of the harness: no samplers, no fork
server, no per-token clock, no frozen garbage collector; only the engine, called as the engine's
documentation and the seed's notebook call it, with the same settings the harness uses (model,
precision, LoRA, trainer arguments, prompts). Each figure is taken the plainest way a careful user
would take it: synchronize, read `time.perf_counter()`, do the work, synchronize, read it again.

A spec with `train` is a user's training script: load (cold), train, end. One with `warm_loads`
loads again that many times; one with `generate` points generates at them, after its loads. The
cross-check runs each repeat as the harness runs its cases: training in a process of its own, and
loading again and generating in one process where the harness runs its cases in one, in two (a
loading script; an inference script that loads once and generates, as a user's does) where the
harness isolates its groups; so that no figure follows work in one process that it does not follow
in the other.

- load: `from_pretrained` of model and tokenizer; the first in a process is the cold load, the
  next ones (after freeing the last) warm loads. With `"first": true` the process loads once and
  exits: the compile caches it was pointed at are empty, so this is the first load on a machine.
  Beside the cold load: the other processes' CPU during it, and this one's threads and children
  when it began (`HostShare`); beside every load, the garbage collector's time in it.
- training: LoRA on the cold-loaded model, trl's SFTTrainer, a callback stamping the end of every
  optimizer step; the first step is the warm-up. Peak memory: `torch.cuda.max_memory_allocated`
  once trained, the load's included, as the harness's training case (a process of its own) counts it.
- generation: a warm-up generate, then per point and round `generate` of 1 and of N new tokens
  (`min_new_tokens` = N): time to first token is the first, the decode rate B (N - 1) / (tN - t1).
  Beside each round and each training step, the garbage collector's seconds in it, as the
  harness's cases record them.
- instruments, to say how much of a gap between the harness and this script the harness's own
  instruments make, measured here where nothing else of the harness is (the plain figures above
  stay as they are): one more warm load, between the first and the rest, while a thread asks the
  device what the harness's sampler asks beside a case, as often; and at the first generation
  point, each round, `generate` of N tokens twice more, timed the harness's way (a logits processor
  that synchronizes and stamps the clock at every token), once alone and once with that thread
  polling. And the plain round once more as the one test of a pytest session in this process
  (`pytest.main`, pytest's own plugins only): what a test's host costs the same calls. The plain
  round and these three run in an order rotated by round; pytest stays imported after the first.
- kernel launches per token, after every timed round: one generation per point under
  torch.profiler, counted as the harness counts its profiled round's (on a GPU).
- the process, once warmed up for generation (`process_context`): what else runs in it and on its
  GPU and how the interpreter and torch are set, so that a gap the instruments do not explain can
  be held against what differs between the two processes. The harness's inference case records
  the same snapshot, from this function.
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import gc
import json
import logging
import os
import stat
import sys
import tempfile
import threading
import time
import tracemalloc
import warnings
from pathlib import Path

SEVEN_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
WARMUP_NEW_TOKENS = 8
SAMPLER_INTERVAL_S = 0.05  # the harness's sampler's (bench.telemetry.sampler), which this must not import
INSTRUMENTS = ("clock", "clock+sampler")
HOSTED = "pytest"  # the plain round, run as the one test of a pytest session in this process
HOSTED_TEST = "def test_plain_round(plain_round):\n    plain_round()\n"
# The harness's profiled round (suites/test_infer.py, bench.telemetry.kernels), which this must not
# import: at most this many new tokens, and the host calls that count as a kernel launch.
PROFILED_NEW_TOKENS = 8
PROBE_BEST_OF = 5  # speed_probes: the best of this many, as timeit reports a microbenchmark
LAUNCH_CALLS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx",
                "cudaLaunchCooperativeKernel", "cudaGraphLaunch")
# the interpreter's switches that change how fast its Python runs (-X dev's debug allocator and
# checks, -O's asserts, -b's checks on bytes)
LOGGERS = ("", "transformers", "torch", "unsloth", "accelerate", "peft")  # process_context's log levels
PYTHON_FLAGS = ("dev_mode", "optimize", "bytes_warning")
# Variables that change how the stack runs (the process context lists those set, with their values;
# none of these prefixes names a credential, and the cross-check redacts what it records anyway).
TUNING_PREFIXES = ("CUDA_", "PYTORCH_", "TORCH", "UNSLOTH_", "OMP_", "MKL_", "TOKENIZERS_", "PYTHON", "TRITON_",
                   "NCCL_", "MALLOC_", "LD_PRELOAD")


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(open(spec_path, encoding="utf-8").read())
    if spec["engine"] == "unsloth":
        import unsloth  # noqa: F401  (first: it patches transformers, peft and trl)
    import torch
    import transformers

    out: dict = {"started": time.time(), "versions": {"torch": torch.__version__,
                                                      "transformers": transformers.__version__},
                 "torch_threads": torch.get_num_threads()}
    script = Script(spec, torch)
    modules, host = len(sys.modules), HostShare()
    model, tokenizer, out["cold_load_s"] = script.timed_load()
    out["cold_load_modules_imported"] = len(sys.modules) - modules
    out["cold_load_host"] = host.since()
    if spec.get("first"):
        out["finished"] = time.time()
        _write(out_path, out)
        return
    if spec.get("train"):
        out["train"] = script.train(model, tokenizer)
    if spec.get("warm_loads"):
        warm, collected, sampled = [], [], {"load_s": [], "polls": []}
        ways = ["plain"] * spec["warm_loads"]
        ways.insert(1, "sampler")  # one more between the first and the rest: polled as the harness's sampler polls
        for way in ways:
            del model
            script.free()
            collector, polling = Collector(), Polling(spec["device"]) if way == "sampler" else None
            with polling or contextlib.nullcontext():
                model, tokenizer, seconds = script.timed_load()
            spent = collector.stop()
            if polling:
                sampled["load_s"].append(seconds)
                sampled["polls"].append(polling.polls)
            else:
                collected.append(spent)
                warm.append(seconds)
        out["warm_load_s"], out["warm_load_gc"] = warm, collected
        if sampled["load_s"]:
            out["warm_load_instrumented"] = {"sampler": sampled}
    if spec.get("generate"):
        out["generate"], out["generate_context"] = script.generate_points(model, tokenizer)
    out["finished"] = time.time()
    _write(out_path, out)


class HostShare:
    """What else the host did while this process loaded: the CPU time of every other process (and
    of this one's children) as cores, and this process's threads and children when it began (Linux
    only, /proc); and the garbage collector's seconds and full passes in it, which the harness's
    load case records too. A load that competes with work an import left running, or walks more
    objects per collection, shows it here."""

    def __init__(self) -> None:
        self.started, self.busy, self.own = time.perf_counter(), _host_busy_s(), own_cpu_s()
        self.threads, self.children = _threads_and_children()
        self.collector = Collector()

    def since(self) -> dict:
        collected = self.collector.stop()
        wall = time.perf_counter() - self.started
        busy = _host_busy_s()
        others = None if busy is None or self.busy is None else (busy - self.busy - (own_cpu_s() - self.own)) / wall
        return {"others_cpu_cores": others, "threads_at_start": self.threads, "children_at_start": self.children,
                **collected}


class Collector:
    """The garbage collector's seconds and full passes from now until `stop` (`gc.callbacks`), as
    the harness's `CollectorTime` counts them beside its loads (this script imports nothing of it)."""

    def __init__(self) -> None:
        self.seconds, self.full_passes, self._started = 0.0, 0, None
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self.full_passes += info["generation"] == 2
            self._started = None

    def stop(self) -> dict:
        gc.callbacks.remove(self._callback)
        return {"gc_s": self.seconds, "gc_full_passes": self.full_passes}


def _host_busy_s() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """This process's CPU seconds, all its threads: over a generation, against its wall time, whether
    the host-bound loop had a core to itself (near 1) or waited for one."""
    times = os.times()
    return times.user + times.system


def _threads_and_children() -> tuple[int | None, int | None]:
    try:
        tasks = os.listdir("/proc/self/task")
        children = sum(len(Path(f"/proc/self/task/{t}/children").read_text(encoding="ascii").split()) for t in tasks)
    except OSError:
        return None, None
    return len(tasks), children


class Script:
    def __init__(self, spec: dict, torch) -> None:
        self.spec, self.torch = spec, torch
        self.cuda = spec["device"].startswith("cuda")

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()

    def timed_load(self):
        self.sync()
        started = time.perf_counter()
        model, tokenizer = self.load()
        self.sync()
        return model, tokenizer, time.perf_counter() - started

    def load(self):
        spec = self.spec
        if spec["engine"] == "unsloth":
            from unsloth import FastLanguageModel

            return FastLanguageModel.from_pretrained(model_name=spec["model"], max_seq_length=spec["max_seq_length"],
                                                     dtype=None, load_in_4bit=spec["four_bit"])
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs = {"dtype": self.torch.bfloat16 if self.cuda else self.torch.float32}
        if self.cuda:
            kwargs["device_map"] = {"": spec["device"]}
            if spec["four_bit"]:
                from transformers import BitsAndBytesConfig

                kwargs["quantization_config"] = BitsAndBytesConfig(
                    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=self.torch.bfloat16)
        return AutoModelForCausalLM.from_pretrained(spec["model"], **kwargs), AutoTokenizer.from_pretrained(spec["model"])

    # ---- training ---------------------------------------------------------------------------
    def with_lora(self, model):
        lora = self.spec["train"]["lora"]
        if self.spec["engine"] == "unsloth":
            from unsloth import FastLanguageModel

            return FastLanguageModel.get_peft_model(
                model, r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], bias="none",
                target_modules=SEVEN_TARGETS, use_gradient_checkpointing="unsloth", random_state=lora["seed"])
        from peft import LoraConfig, get_peft_model

        if self.cuda:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], bias="none",
                            target_modules=SEVEN_TARGETS[:4],
                            target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj"],
                            task_type="CAUSAL_LM")
        self.torch.manual_seed(lora["seed"])
        return get_peft_model(model, config)

    def train(self, model, tokenizer) -> dict:
        import importlib.util

        from transformers import TrainerCallback
        from trl import SFTConfig, SFTTrainer

        settings = self.spec["train"]
        stamps: list[float] = []
        collected: list[float] = []  # the collector's seconds so far, at each stamp
        sync = self.sync
        collector = Collector()

        class StepEnds(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                sync()
                stamps.append(time.perf_counter())
                collected.append(collector.seconds)

        model = self.with_lora(model)
        config = SFTConfig(
            output_dir=settings["output_dir"], per_device_train_batch_size=settings["batch_size"],
            gradient_accumulation_steps=settings["grad_accum"], max_steps=settings["steps"],
            learning_rate=settings["learning_rate"], warmup_steps=settings["warmup_steps"],
            lr_scheduler_type="linear", logging_steps=1, report_to=[], seed=settings["seed"],
            max_length=self.spec["max_seq_length"], disable_tqdm=True, dataloader_num_workers=0,
            save_strategy="no", bf16=self.cuda, fp16=False, use_cpu=not self.cuda,
            optim="adamw_8bit" if self.cuda and importlib.util.find_spec("bitsandbytes") else "adamw_torch",
            router_aux_loss_coef=0.0)
        trainer = SFTTrainer(model=model, args=config, train_dataset=self.training_rows(tokenizer),
                             processing_class=tokenizer, callbacks=[StepEnds()])
        sync()
        stamps.append(time.perf_counter())
        collected.append(collector.seconds)
        trainer.train()
        collector.stop()
        steps = [b - a for a, b in zip(stamps, stamps[1:])]
        gc_s = [b - a for a, b in zip(collected, collected[1:])]
        peak = self.torch.cuda.max_memory_allocated() / 1e9 if self.cuda else None
        del trainer, model
        return {"step_s": steps, "s_per_step": steps[1:], "gc_s": gc_s[1:], "peak_vram_gb": peak}

    def training_rows(self, tokenizer):
        """The conversations as prompt and completion (the completion trained on); with a fixed
        length, as text rows of that many tokens (conversations joined end to end): how the
        harness trains where loss means nothing and only full-length speed counts."""
        import datasets

        rows, fixed = self.spec["train"]["conversations"], self.spec["train"]["fixed_length"]
        pairs = []
        for row in rows:
            effort = row.get("reasoning_effort") or "medium"
            prompt = tokenizer.apply_chat_template(row["messages"][:-1], tokenize=False, add_generation_prompt=True,
                                                   reasoning_effort=effort)
            full = tokenizer.apply_chat_template(row["messages"], tokenize=False, reasoning_effort=effort)
            pairs.append({"prompt": prompt, "completion": full[len(prompt):]})
        if fixed is None:
            return datasets.Dataset.from_list(pairs)
        texts, current, length = [], [], 0
        for pair in pairs:
            text = pair["prompt"] + pair["completion"]
            current.append(text)
            length += len(tokenizer(text, add_special_tokens=False)["input_ids"])
            if length > fixed:
                texts.append("".join(current))
                current, length = [], 0
        return datasets.Dataset.from_dict({"text": texts})

    # ---- generation -------------------------------------------------------------------------
    def generate_points(self, model, tokenizer) -> tuple[list[dict], dict]:
        """Each point's rounds, and the process as generation began (`process_context`)."""
        if self.spec["engine"] == "unsloth":
            from unsloth import FastLanguageModel

            FastLanguageModel.for_inference(model)
        else:
            model.eval()
        tokenizer.padding_side = "left"
        points = self.spec["generate"]
        self.timed_generate(model, tokenizer, self.prompts(tokenizer, points[0]["conversations"][:1], "medium"),
                            WARMUP_NEW_TOKENS)
        out, context = [], process_context(self.spec["device"])
        for index, point in enumerate(points):
            prompts, new_tokens = self.prompts(tokenizer, point["conversations"], point["effort"]), point["new_tokens"]
            ttft, decode, collected, cpu_share = [], [], [], []
            instrumented = ({name: {"ttft_s": [], "decode_tok_s": [], "polls": []} for name in INSTRUMENTS}
                            if index == 0 else {})
            hosted = {"ttft_s": [], "decode_tok_s": []} if index == 0 else None
            for round_ in range(self.spec["rounds"]):
                for way in _rotated(("plain", *instrumented, *([HOSTED] if hosted else [])), round_):
                    if way == HOSTED:
                        first, rate = self.hosted_round(model, tokenizer, prompts, new_tokens)
                        hosted["ttft_s"].append(first)
                        hosted["decode_tok_s"].append(rate)
                        continue
                    if way != "plain":
                        first, decoding, polls = self.clocked_generate(model, tokenizer, prompts, new_tokens,
                                                                       sampled=way == "clock+sampler")
                        instrumented[way]["polls"].append(polls)
                        instrumented[way]["ttft_s"].append(first)
                        instrumented[way]["decode_tok_s"].append(len(prompts) * (new_tokens - 1) / decoding)
                        continue
                    collector = Collector()
                    first, rate, share = self.plain_round(model, tokenizer, prompts, new_tokens)
                    cpu_share.append(share)
                    collected.append(collector.stop()["gc_s"])
                    ttft.append(first)
                    decode.append(rate)
            out.append({"batch_size": point["batch_size"], "effort": point["effort"], "ttft_s": ttft,
                        "decode_tok_s": decode, "gc_s": collected, "cpu_share": cpu_share,
                        **({"instrumented": instrumented, "hosted": hosted} if instrumented else {})})
        for point, done in zip(points, out):  # after every timed round: the profiler's state stays behind it
            done["launches_per_token"] = self.launches_per_token(
                model, tokenizer, self.prompts(tokenizer, point["conversations"], point["effort"]),
                min(point["new_tokens"], PROFILED_NEW_TOKENS))
        return out, context

    def hosted_round(self, model, tokenizer, prompts: list[str], new_tokens: int) -> tuple[float, float]:
        """(time to first token, decode tokens/s) of `plain_round` run as the one test of a pytest
        session in this process (`pytest.main`, pytest's own plugins only, no ini file of the
        directory it runs in): pytest's capture of stdout and stderr, its log handlers, warning
        capture, faulthandler and thirty-odd frames of stack around the same calls. Against the plain
        rounds beside it, what being hosted by pytest costs a script, whatever else a harness's
        process differs in."""
        import pytest

        folder = Path(self.hosted_folder.name)
        script, done = self, []

        class Work:  # hands the round to the test as its fixture
            @pytest.fixture
            def plain_round(self):
                return lambda: done.append(script.plain_round(model, tokenizer, prompts, new_tokens))

        with _pytest_alone():
            code = pytest.main(["-q", "-p", "no:cacheprovider", "-c", str(folder / "pytest.ini"), "--rootdir",
                                str(folder), "--import-mode=importlib", str(folder / "test_hosted.py")], plugins=[Work()])
        if code != 0 or not done:
            raise RuntimeError(f"the plain round run as a pytest test failed (pytest exit {int(code)}): see above")
        return done[0][0], done[0][1]

    @functools.cached_property
    def hosted_folder(self) -> tempfile.TemporaryDirectory:
        """The hosted round's one test file and an empty ini, written once per process."""
        folder = tempfile.TemporaryDirectory(prefix="plain-hosted-")
        (Path(folder.name) / "test_hosted.py").write_text(HOSTED_TEST, encoding="utf-8")
        (Path(folder.name) / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        return folder

    def launches_per_token(self, model, tokenizer, prompts: list[str], new_tokens: int) -> float | None:
        """Kernel launches per new token of one generation under torch.profiler, counted as the
        harness counts its profiled round's: whether both sides ran the same kernels (the same work)
        or one took another path. None on the CPU, which launches none."""
        if not self.cuda:
            return None
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            self.generate(model, tokenizer, prompts, new_tokens)
            self.sync()
        events = prof.profiler.kineto_results.events()
        return sum(1 for event in events if event.name() in LAUNCH_CALLS
                   and not getattr(event, "is_hidden_event", lambda: False)()) / new_tokens

    def clocked_generate(self, model, tokenizer, prompts: list[str], new_tokens: int,
                         sampled: bool) -> tuple[float, float, int]:
        """(time to first token, seconds from the first token to the last, polls) as the harness
        takes them: a clock read after a synchronize at every token; with `sampled`, while a thread
        polls the device as the harness's sampler does (how many times it did: 0 without one)."""
        from transformers import LogitsProcessorList

        stamps, polling = TokenStamps(self.sync), Polling(self.spec["device"]) if sampled else None
        with polling or contextlib.nullcontext():
            self.sync()
            stamps.started = time.perf_counter()
            self.generate(model, tokenizer, prompts, new_tokens, LogitsProcessorList([stamps]))
        return stamps.stamps[0] - stamps.started, stamps.stamps[-1] - stamps.stamps[0], polling.polls if polling else 0

    @staticmethod
    def prompts(tokenizer, conversations: list[list[dict]], effort: str) -> list[str]:
        return [tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                              reasoning_effort=effort) for messages in conversations]

    def plain_round(self, model, tokenizer, prompts: list[str], new_tokens: int) -> tuple[float, float, float]:
        """(time to first token, decode tokens/s, own CPU seconds over wall seconds of the whole
        generation), as a user's script times them: a clock around a one-token and a whole
        generation, the decode rate from their difference. The harness's generation case runs this
        too, in its own process between its rounds (`--plain-control`), which is why it is here once."""
        first = self.timed_generate(model, tokenizer, prompts, 1)
        cpu = own_cpu_s()
        whole = self.timed_generate(model, tokenizer, prompts, new_tokens)
        return first, len(prompts) * (new_tokens - 1) / (whole - first), (own_cpu_s() - cpu) / whole

    def timed_generate(self, model, tokenizer, prompts: list[str], new_tokens: int) -> float:
        self.sync()
        started = time.perf_counter()
        self.generate(model, tokenizer, prompts, new_tokens)
        self.sync()
        return time.perf_counter() - started

    def generate(self, model, tokenizer, prompts: list[str], new_tokens: int, logits_processor=None) -> None:
        """Greedy generation of exactly `new_tokens`, as the harness's engines generate."""
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.spec["device"])
        with self.torch.inference_mode():
            model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=tokenizer.pad_token_id, logits_processor=logits_processor)


class TokenStamps:
    """A logits processor that synchronizes and reads the clock at every new token: how the
    harness times a generation (its `TokenClock`), rebuilt here from the same two calls."""

    def __init__(self, sync) -> None:
        self.sync, self.started, self.stamps = sync, 0.0, []

    def __call__(self, input_ids, scores):
        self.sync()
        self.stamps.append(time.perf_counter())
        return scores


class Polling:
    """A thread asking, every SAMPLER_INTERVAL_S, what the harness's sampler asks beside a case:
    on a GPU NVML's used memory, this process's memory, power and utilization; on the CPU psutil's
    resident memory and CPU use. Nothing where the library is missing."""

    def __init__(self, device: str) -> None:
        self.device, self.stopped, self.polls = device, threading.Event(), 0
        self.started = threading.Event()  # set once the first poll is done (or there is nothing to poll)
        self.thread = threading.Thread(target=self._run, daemon=True, name="polling")

    def __enter__(self) -> "Polling":
        """Returns once polling runs, as the harness's sampler runs before its case: a short load
        must not finish before the thread has asked anything."""
        self.thread.start()
        self.started.wait(timeout=10.0)
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()

    def _run(self) -> None:
        ask = self._nvml() if self.device.startswith("cuda") else self._psutil()
        while ask is not None and not self.stopped.is_set():
            ask()
            self.polls += 1
            self.started.set()
            self.stopped.wait(SAMPLER_INTERVAL_S)
        self.started.set()

    def _nvml(self):
        try:
            pynvml, handle = _nvml_device()
        except Exception:  # no NVML here: nothing to poll
            return None
        pid = os.getpid()

        def ask() -> None:
            pynvml.nvmlDeviceGetMemoryInfo(handle)
            for call in (lambda: [p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
                                  if p.pid == pid],
                         lambda: pynvml.nvmlDeviceGetPowerUsage(handle),
                         lambda: pynvml.nvmlDeviceGetUtilizationRates(handle)):
                try:
                    call()
                except pynvml.NVMLError:  # a query this GPU does not answer, as the harness's sampler allows
                    pass
        return ask

    def _psutil(self):
        try:
            import psutil
        except ImportError:
            return None
        process = psutil.Process()
        process.cpu_percent(None)
        return lambda: (process.memory_info(), process.cpu_percent(None))


def process_context(device: str) -> dict:
    """What this process is like right now, beyond its code: its threads, the cores it may run on,
    its priority, how the interpreter switches threads, collects garbage and handles warnings and
    faults, whether anything traces or monitors it, torch's threads, profiler, numeric switches and
    modes, the other processes on its GPU (and how many are its siblings), the tuning variables set,
    and how fast it runs Python and a torch op (`speed_probes`). A host-bound generation (a launch
    per kernel, thousands per token) runs as fast as its Python thread is left alone, so any of
    these can move a decode rate with the same code."""
    context: dict = {
        "threads": sorted(_thread_kind(t.name) for t in threading.enumerate()),
        "os_threads": _threads_and_children()[0],
        "cpus_allowed": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "niceness": os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else None,
        "switch_interval_s": sys.getswitchinterval(),
        "gc_enabled": gc.isenabled(), "gc_threshold": list(gc.get_threshold()), "gc_frozen": gc.get_freeze_count(),
        "modules": len(sys.modules),  # what else the process imported shapes its heap (docs/fidelity.md)
        "traced": sys.gettrace() is not None or sys.getprofile() is not None,
        # a tool on sys.monitoring (3.12+: a coverage or debugger) or tracemalloc slows every Python line
        "monitoring_tools": [name for name in map(sys.monitoring.get_tool, range(6)) if name]
        if hasattr(sys, "monitoring") else [],
        "tracemalloc": tracemalloc.is_tracing(),
        "faulthandler": faulthandler.is_enabled(),  # pytest turns it on
        "warning_filters": len(warnings.filters),
        "python_flags": [name for name in PYTHON_FLAGS if getattr(sys.flags, name, 0)],
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        # a library logging per token costs nothing until a level lets its records through (pytest's
        # capture handlers, a verbosity set by a tool); and a write goes as fast as what takes it
        "log_levels": {name or "root": logging.getLevelName(logging.getLogger(name).getEffectiveLevel())
                       for name in LOGGERS},
        "log_handlers": len(logging.getLogger().handlers),
        "stdio": [_stream_kind(fd) for fd in (1, 2)],
        **_core(),
        "environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith(TUNING_PREFIXES)
                        and k not in ("PYTHONPATH", "PYTHONUNBUFFERED")},
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        context["torch_threads"] = torch.get_num_threads()
        context["torch_profiler"] = bool(torch.autograd._profiler_enabled())
        context["grad_enabled"] = torch.is_grad_enabled()
        context["float32_matmul_precision"] = torch.get_float32_matmul_precision()
        context["deterministic"] = torch.are_deterministic_algorithms_enabled()
        context["cudnn_benchmark"] = bool(torch.backends.cudnn.benchmark)
        # a mode on the stack (`with torch.device(...)`, set_default_device) runs Python on every torch call
        context["torch_function_modes"] = torch._C._len_torch_function_stack()
        context["default_device"] = str(torch.get_default_device())
        context["default_dtype"] = str(torch.get_default_dtype()).removeprefix("torch.")
    if device.startswith("cuda"):
        context["other_gpu_processes"], context["other_gpu_siblings"] = _other_gpu_processes()
        if torch is not None:
            context["sync_debug_mode"] = torch.cuda.get_sync_debug_mode()
            # what the caching allocator parsed when it started, which the environment may no longer
            # say (Unsloth sets PYTORCH_ALLOC_CONF as it is imported); None where torch cannot tell
            settings = getattr(torch._C, "_accelerator_getAllocatorSettings", None)
            context["allocator_settings"] = settings() if settings is not None else None
    context["probes"] = speed_probes(torch, device)
    return context


def _stream_kind(fd: int) -> str:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return "closed"
    if stat.S_ISFIFO(mode):
        return "pipe"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "terminal" if os.isatty(fd) else "device" if stat.S_ISCHR(mode) else "other"


def speed_probes(torch, device: str) -> dict:
    """How fast this process runs the two things a launch-bound generation is made of, best of
    PROBE_BEST_OF: microseconds per iteration of a pure-Python loop, and per small in-place torch op
    on the device (on a GPU, one kernel launch each; synchronized before and after). Held between
    two processes: a slower interpreter shows in the first, a slower dispatch or launch path in the
    second, neither when the two ran different work. A few milliseconds in all."""
    def python_loop(n: int = 20_000) -> float:
        started, total = time.perf_counter(), 0
        for i in range(n):
            total += i & 3
        return (time.perf_counter() - started) / n * 1e6

    out = {"python_loop_us": min(python_loop() for _ in range(PROBE_BEST_OF))}
    if torch is None:
        return out
    cuda = device.startswith("cuda")
    tensor = torch.ones(8, device=device)

    def torch_op(n: int = 500) -> float:
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(n):
            tensor.add_(1)
        if cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - started) / n * 1e6

    out["torch_op_us"] = min(torch_op() for _ in range(PROBE_BEST_OF))
    return out


def _core() -> dict:
    """The core this thread ran on last and that core's clock now (Linux; nothing elsewhere): a
    host-bound loop runs at its core's speed, which differs between cores and moves with the load."""
    core = _stat_field(f"/proc/self/task/{threading.get_native_id()}/stat", 36)
    if core is None:
        return {}
    try:
        with open(f"/sys/devices/system/cpu/cpu{core}/cpufreq/scaling_cur_freq", encoding="ascii") as fh:
            return {"core": core, "core_mhz": int(fh.read()) // 1000}
    except (OSError, ValueError):
        return {"core": core}


def _thread_kind(name: str) -> str:
    """A thread's name without the counter Python gives unnamed threads ("Thread-3 (run)")."""
    head, _, rest = name.partition(" ")
    return f"Thread {rest}".strip() if head.startswith("Thread-") else name


def _other_gpu_processes() -> tuple[int | None, int | None]:
    """How many other processes hold a context on this process's GPU, and how many of those share
    its parent (another child of the same harness or script); None: NVML cannot say."""
    try:
        pynvml, handle = _nvml_device()
        pids = {p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)}
    except Exception:  # no NVML here
        return None, None
    # NVML lists host pids: in a container that hides them this process is not among them, and
    # which of the others are its own cannot be told
    if os.getpid() not in pids:
        return None, None
    others = pids - {os.getpid()}
    return len(others), sum(_parent(pid) == os.getppid() for pid in others)


def _parent(pid: int) -> int | None:
    """A process's parent pid (None elsewhere or once it is gone)."""
    return _stat_field(f"/proc/{pid}/stat", 1)


def _stat_field(path: str, index: int) -> int | None:
    """A numeric field of a Linux /proc stat file, counted from the one after the command name
    (which may hold spaces and parentheses); None where there is no such file."""
    try:
        with open(path, encoding="ascii") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[index])
    except (OSError, ValueError, IndexError):
        return None


def _nvml_device():
    """(pynvml, the handle of this process's GPU): the first of CUDA_VISIBLE_DEVICES, by index
    (the cross-check orders devices by PCI bus, as NVML does) or by UUID."""
    import pynvml

    pynvml.nvmlInit()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
    return pynvml, (pynvml.nvmlDeviceGetHandleByUUID(visible) if visible.startswith("GPU-")
                    else pynvml.nvmlDeviceGetHandleByIndex(int(visible)))


@contextlib.contextmanager
def _pytest_alone():
    """pytest as it comes, whatever the environment asks of pytest sessions: no installed plugin
    (PYTEST_DISABLE_PLUGIN_AUTOLOAD), no options or plugins from PYTEST_ADDOPTS or PYTEST_PLUGINS
    (an `-n 4` there would name a plugin not loaded). The environment is as it was afterwards."""
    saved = dict(os.environ)
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS"):
        os.environ.pop(name, None)
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _rotated(ways: tuple[str, ...], round_: int) -> tuple[str, ...]:
    shift = round_ % len(ways)
    return ways[shift:] + ways[:shift]


def _write(path: str, out: dict) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
