import json

import pytest

from bench.errors import BenchError
from bench.records.results import Measurement, ResultsWriter, RunManifest, read_results

from conftest import make_record, read_jsonl


def test_each_record_is_on_disk_as_soon_as_it_is_written(tmp_path):
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path)
    writer.write(make_record("load_s", 1.5, samples=[1.4, 1.5, 1.6], cache="warm"))
    first = read_jsonl(path)  # read while the writer is still open
    assert len(first) == 1 and first[0]["value"] == 1.5 and first[0]["samples"] == [1.4, 1.5, 1.6]
    assert first[0]["schema"] == 1 and first[0]["params"] == {"cache": "warm"}
    writer.write(make_record("load_s", 1.7, cache="cold"))
    writer.close()
    assert [r.value for r in read_results(path)] == [1.5, 1.7]


def test_a_torn_last_line_is_dropped_on_read_and_cut_before_appending(tmp_path):
    path = tmp_path / "results.jsonl"
    good = make_record("load_s", 1.0).to_json()
    path.write_text(good + "\n" + good[: len(good) // 2])  # the writer died mid-record
    assert len(read_results(path)) == 1
    writer = ResultsWriter(path)
    writer.write(make_record("load_s", 2.0))
    writer.close()
    assert [r.value for r in read_results(path)] == [1.0, 2.0]
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_a_corrupt_line_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "results.jsonl"
    good = make_record("load_s", 1.0).to_json()
    path.write_text(good + "\n{not json\n" + good + "\n")
    with pytest.raises(BenchError, match=r"results.jsonl:2: corrupt record"):
        read_results(path)


def test_missing_results_say_what_to_give(tmp_path):
    with pytest.raises(BenchError, match="no results file"):
        read_results(tmp_path)


def test_nan_is_refused_rather_than_written_as_invalid_json():
    with pytest.raises(ValueError):
        make_record("load_s", float("nan")).to_json()


def test_unknown_fields_from_a_newer_schema_are_ignored():
    d = json.loads(make_record("load_s", 1.0).to_json())
    d["future_field"] = 1
    assert Measurement.from_dict(d).value == 1.0


def test_manifest_round_trip_and_corrupt_manifest(tmp_path):
    m = RunManifest(run_id="r", started=1.0, command=["pytest"], profile="quick", model="tiny-gpt-oss",
                    backend="hf", device="cpu", gpus=[{"index": 0, "name": "X"}])
    m.write(tmp_path)
    back = RunManifest.read(tmp_path)
    assert back == m and back.status == "incomplete" and back.schema == 1
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(BenchError, match="corrupt manifest"):
        RunManifest.read(tmp_path)
    with pytest.raises(BenchError, match="no manifest.json"):
        RunManifest.read(tmp_path / "missing")
