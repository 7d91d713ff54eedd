"""The report's efficiency table (bench.report.efficiency_table), straight from a run on disk: MBU of
decoding and MFU of prefill and training against the GPU's measured ceilings, and costs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.analysis.runs import load_run
from bench.report.efficiency_table import efficiency_rows, precision_of, run_energy

from conftest import make_record, write_run

CEILINGS = {"matmul_tflops": 790.0, "copy_gbps": 3000.0}


def replica_run(tmp_path, calibration=CEILINGS):
    infer = {"batch_size": 1, "effort": "low"}
    train = {"lora_r": 8, "batch_size": 2, "grad_accum": 8}
    records = [make_record("decode_tok_s", 10.0, samples=[10.0, 10.2], extra={"prompt_tokens": 120}, **infer),
               make_record("itl_p50_ms", 100.0, **infer), make_record("ttft_s", 0.15, **infer),
               make_record("new_tokens", 16, **infer),
               make_record("load_s", 8.0, cache="warm", extra={"backend_info": {"dtype": "4-bit (bitsandbytes)"}}),
               make_record("s_per_step", 5.0, samples=[5.0, 5.1], **train),
               make_record("train_tokens_per_s", 3276.8, **train),
               make_record("energy_j_per_token", 0.1, suite="train", **train)]
    case = {"infer": "suites/test_infer.py::test_generate[bs1-low]", "train": "suites/test_train.py::test_train[r8-b2x8]",
            "load": "suites/test_load.py::test_load[warm]"}  # the records of one case share its test id
    records = [replace(r, test_id=case[r.suite], gpu_index=0, gpu_uuid="GPU-1", gpu_name="H100") for r in records]
    return load_run(write_run(tmp_path, "r", records, model="replica:gpt-oss-20b", calibration=calibration))


def test_decode_and_training_get_their_share_of_the_measured_ceilings_and_a_price(tmp_path):
    run = replica_run(tmp_path)
    assert precision_of(run.records) == "4bit"
    rows, points = efficiency_rows(run, price_per_hour=3.0)
    decode = next(r for r in rows if r["suite"] == "infer")
    training = next(r for r in rows if r["suite"] == "train")
    assert 0 < decode["mbu"] < 0.2 and 0 < decode["mfu"] < 1  # host-bound decode: a small share of bandwidth
    assert 0 < training["mfu"] < 1 and training["energy"] == pytest.approx(0.1)
    assert decode["usd_per_mtok"] == pytest.approx(3.0 / 3600 / 10.0 * 1e6)
    assert {label for label, *_ in points} == {"decode bs1", "train r8"}


def test_no_ceilings_no_efficiency_and_no_energy_no_total(tmp_path):
    run = replica_run(tmp_path, calibration={})
    assert efficiency_rows(run) == ([], [])
    assert run_energy(run, 3.0) is None
