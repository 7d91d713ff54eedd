"""The serving suite's parts: figures from per-request timings, endpoints and their errors, the
load generator against a stand-in server, and the suite end to end against it (an API key that
never reaches the run directory, a server that dies mid-run)."""

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from test_plugin import run_pytest

from bench.analysis.serving import (
    RequestTiming,
    load_figures,
    parse_slo,
    saturated,
    saturation_point,
)
from bench.errors import BenchError
from bench.records.results import read_results
from bench.serving.client import closed_loop, open_loop
from bench.serving.endpoint import Endpoint, display_url, parse_endpoints, probe
from bench.serving.server import free_port
from conftest import REPO

SLO = {"ttft": 1.0, "tpot": 0.05}


@pytest.fixture
def fake_server(request):
    """Start tests/fake_openai.py with the given arguments; yields its base URL."""
    processes = []

    def start(*args: str, env: dict | None = None) -> str:
        port = free_port()
        proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "fake_openai.py"), str(port), *args],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(proc)
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # up, and refusing us (a key is required, or not OpenAI)
            except OSError:
                time.sleep(0.1)
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in processes:
        proc.kill()
        proc.wait()


def test_per_request_figures_follow_vllm_definitions():
    t = RequestTiming(ttft_s=0.5, e2e_s=1.4, output_tokens=10, chunk_times_s=(0.5, 0.6, 0.8))
    assert t.tpot_s == pytest.approx(0.1)  # (1.4 - 0.5) / 9
    assert t.itl_s == pytest.approx([0.1, 0.2])
    assert RequestTiming(0.5, 0.5, 1).tpot_s is None  # one token: no time per output token
    assert not RequestTiming(None, 2.0, 0, error="HTTP 500").ok


def test_goodput_counts_requests_within_every_slo_and_the_point_is_judged_on_p99():
    fast = [RequestTiming(0.1, 0.1 + 0.01 * 9, 10) for _ in range(98)]
    slow_first_token = [RequestTiming(3.0, 3.09, 10), RequestTiming(3.0, 3.09, 10)]
    figures = load_figures([(fast + slow_first_token, 10.0)], SLO)
    [one_round] = figures.rounds
    assert one_round.good == 98 and one_round.goodput_rps == pytest.approx(9.8)
    assert one_round.output_tok_s == pytest.approx(100.0) and one_round.request_rps == pytest.approx(10.0)
    assert not figures.slo_met and figures.failed_slos == ["ttft"]  # p99 TTFT is 3 s
    healthy = load_figures([(fast, 5.0)], SLO)
    assert healthy.slo_met and healthy.failed_slos == []
    failed = load_figures([(fast + [RequestTiming(None, 1.0, 0, error="HTTP 500")], 5.0)], SLO)
    assert not failed.slo_met and "errors" in failed.failed_slos and failed.error_rate == pytest.approx(1 / 99)


def test_slo_text_and_saturation():
    assert parse_slo("ttft=2s, tpot=100ms") == {"ttft": 2.0, "tpot": 0.1}
    assert parse_slo("e2e=1.5") == {"e2e": 1.5}
    for bad, message in (("ttft=soon", "not a duration"), ("speed=1s", "unknown objective"), ("", "at least one"),
                         ("ttft=0ms", "must be positive")):
        with pytest.raises(BenchError, match=message):
            parse_slo(bad)
    assert not saturated([100.0]) and not saturated([100.0, 190.0]) and saturated([100.0, 190.0, 195.0])
    assert saturation_point([(1, True), (2, True), (4, False)]) == 2
    assert saturation_point([(1, False)]) is None


def test_endpoints_are_named_and_shown_without_credentials():
    assert parse_endpoints("http://h:8000/v1/") == [("endpoint", "http://h:8000")]
    assert parse_endpoints("vllm=http://a:1,sglang=http://b:2") == [("vllm", "http://a:1"), ("sglang", "http://b:2")]
    assert parse_endpoints("http://a:1,http://b:2") == [("a-1", "http://a:1"), ("b-2", "http://b:2")]
    with pytest.raises(BenchError, match="same name"):
        parse_endpoints("x=http://a:1,x=http://b:2")
    assert display_url("http://user:secret@h:8000/v1?api_key=abc") == "http://h:8000/v1"
    assert "secret" not in repr(Endpoint("e", "http://h", "m", api_key="secret"))


def test_chat_requests_put_the_reasoning_effort_where_the_server_reads_it():
    messages = [{"role": "user", "content": "hi"}]
    openai = Endpoint("e", "http://h", "m").chat_body(messages, "high", 64, 1)
    assert openai["reasoning_effort"] == "high" and openai["max_tokens"] == 64 and openai["stream"]
    served = Endpoint("e", "http://h", "m", dialect="transformers").chat_body(messages, "low", 16, 1)
    assert served["chat_template_kwargs"] == {"reasoning_effort": "low"} and "reasoning_effort" not in served
    assert json.loads(served["generation_config"])["min_new_tokens"] == 16  # fixed-length outputs


def test_the_load_generator_times_every_streamed_token(fake_server):
    url = fake_server("--tokens", "6", "--gap-ms", "5")
    endpoint = probe("fake", url, None, None)
    assert endpoint.model == "fake-model"
    body = endpoint.chat_body([{"role": "user", "content": "hi"}], "low", 6, 0)
    result = closed_loop(endpoint, [body] * 6, concurrency=3, timeout_s=30)
    assert len(result.timings) == 6 and all(t.ok for t in result.timings)
    for t in result.timings:
        assert t.output_tokens == 6 and len(t.chunk_times_s) == 6  # usage's count, one chunk per token
        assert 0.005 <= t.ttft_s <= t.chunk_times_s[-1] <= t.e2e_s
        assert t.tpot_s > 0 and len(t.itl_s) == 5
    assert result.wall_s > 0 and result.client_cpu_s >= 0 and result.loop_lag_ms
    arrivals = open_loop(endpoint, [body] * 4, rate_rps=50.0, seed=7, timeout_s=30)
    assert arrivals.offered_rps == 50.0 and all(t.ok for t in arrivals.timings)


def test_a_wrong_key_and_a_server_that_is_not_openai_are_one_line(fake_server, monkeypatch):
    keyed = fake_server(env={"FAKE_KEY": "right-key-123", "PATH": ""})
    with pytest.raises(BenchError, match="HTTP 401 .*--endpoint-api-key-env"):
        probe("fake", keyed, "wrong-key-456", None)
    endpoint = probe("fake", keyed, "right-key-123", None)
    result = closed_loop(Endpoint("fake", keyed, endpoint.model, api_key="wrong-key-456"),
                         [endpoint.chat_body([{"role": "user", "content": "x"}], "low", 4, 0)], 1, 30)
    assert result.timings[0].error.startswith("HTTP 401")
    with pytest.raises(BenchError, match="did not answer JSON"):
        probe("fake", fake_server("--not-openai"), None, None)
    with pytest.raises(BenchError, match="--endpoint-model other: .* serves fake-model"):
        probe("fake", keyed, "right-key-123", "other")


def test_the_suite_against_an_endpoint_keeps_its_api_key_out_of_the_run(fake_server, tmp_path):
    key = "zz-endpoint-key-0987654321"  # a name no secret pattern knows: redacted because it is the key
    url = fake_server("--tokens", "8", "--gap-ms", "2", env={"FAKE_KEY": key, "PATH": ""})
    result = run_pytest("suites/test_serve.py", "-q", "--gpu", "cpu", "--endpoint", url, "--endpoint-api-key-env",
                        "MY_SERVER_CRED", "--report-dir", str(tmp_path), "--run-id", "serve", "--slo", "ttft=1s,tpot=50ms",
                        env_extra={"MY_SERVER_CRED": key})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    run_dir = tmp_path / "serve"
    records = read_results(run_dir)
    points = {(r.params.get("concurrency"), r.params.get("request_rate")) for r in records if r.metric == "output_tok_s"}
    assert points == {(1, None), (4, None), (None, "0.9x")}  # the quick profile's load points
    assert {r.params["server"] for r in records} == {"endpoint"}
    ttft = next(r for r in records if r.metric == "ttft_s" and r.params.get("concurrency") == 4)
    assert len(ttft.samples) == 2  # one per round: the comparison's samples
    assert all(r.value == 0 for r in records if r.metric == "error_rate")
    html = (run_dir / "report.html").read_text()
    assert 'id="serve-points"' in html and "Latency against throughput" in html and "ttft 1 s, tpot 50 ms" in html
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert key not in path.read_text(errors="replace"), path
    assert key not in result.stdout + result.stderr


@pytest.mark.heavy  # a `transformers serve` of its own; the quick run's self-started server is in test_suites_e2e
def test_servers_chooses_the_self_started_servers(tmp_path):
    """Quick starts the continuous-batching server only; --servers starts the plain one (or both)."""
    result = run_pytest("suites/test_serve.py", "-q", "--gpu", "cpu", "--servers", "transformers", "-k", "c1",
                        "--report-dir", str(tmp_path), "--run-id", "plain")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    records = read_results(tmp_path / "plain")
    assert {r.params["server"] for r in records if r.metric == "output_tok_s"} == {"transformers"}
    assert (tmp_path / "plain" / "serve-logs" / "transformers.log").is_file()
    listed = run_pytest("suites/test_serve.py", "--collect-only", "-q", "--gpu", "cpu",
                        "--servers", "transformers-cb,transformers")
    ids = {line.split("[")[1].rstrip("]") for line in listed.stdout.splitlines() if "::test_serve[" in line}
    assert listed.returncode == 0 and ids == {f"{s}-{p}" for s in ("transformers", "transformers-cb")
                                              for p in ("c1", "c4", "poisson0.9x")}
    for bad, said in (("vllm", "unknown server vllm"), (",", "no server named")):
        refused = run_pytest("suites/test_serve.py", "--collect-only", "-q", "--gpu", "cpu", "--servers", bad)
        assert refused.returncode == 4 and said in refused.stderr and "--endpoint URL" in refused.stderr


def test_a_server_that_dies_mid_run_leaves_the_finished_load_points(fake_server, tmp_path):
    url = fake_server("--tokens", "4", "--gap-ms", "1", "--die-after", "22")
    result = run_pytest("suites/test_serve.py", "-q", "--gpu", "cpu", "--endpoint", url, "--report-dir",
                        str(tmp_path), "--run-id", "dies")
    assert result.returncode == 1, result.stdout[-3000:]
    records = read_results(tmp_path / "dies")
    measured = {r.params.get("concurrency") for r in records if r.metric == "output_tok_s"}
    failed = {r.params.get("concurrency") or r.params.get("request_rate"): r.error
              for r in records if r.metric == "case" and r.status == "failed"}
    # 2 warm-up + 8 requests at c1, then c4 (8 a round) meets a dead server in its second round
    assert measured == {1, 4} and set(failed) == {4, "0.9x"}
    assert "requests failed at c4" in failed[4] and "every request failed at poisson0.9x" in failed["0.9x"]
    assert (tmp_path / "dies" / "report.html").is_file()


def test_a_started_process_dies_with_the_harness(tmp_path):
    """A server (or isolated child) outliving a killed harness would keep its GPU memory."""
    pidfile = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time; from bench.telemetry.processes import die_with_parent; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], preexec_fn=die_with_parent); "
        f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(60)")], cwd=REPO)
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text():
            break
        time.sleep(0.1)
    child = int(pidfile.read_text())
    parent.kill()
    parent.wait()
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, 9)
    pytest.fail("the child outlived its killed parent")


def test_a_second_sigterm_does_not_cut_the_cleanup_short():
    """GNU timeout signals the harness and then its process group: the cleanup the first SIGTERM
    started (servers stopped, the run marked interrupted) must not be interrupted by the second."""
    code = ("import os, signal, time; from bench.telemetry.processes import terminate_as_interrupt\n"
            "terminate_as_interrupt()\n"
            "try:\n    os.kill(os.getpid(), signal.SIGTERM); time.sleep(10)\n"
            "except KeyboardInterrupt:\n    os.kill(os.getpid(), signal.SIGTERM); time.sleep(0.3); print('cleaned up')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "cleaned up" in result.stdout, result.stderr


def test_a_baseline_with_checks_of_other_servers_does_not_refuse_the_run(tmp_path):
    baseline = tmp_path / "served.toml"
    baseline.write_text('[meta]\nname = "served"\nmodel = "tiny-gpt-oss"\n[checks]\n'
                        'output_tok_s = { min = 1.0, where = { server = "vllm", concurrency = 4 } }\n'
                        'tpot_ms = { max = 500.0, where = { server = "transformers-cb", concurrency = 64 } }\n')
    result = run_pytest("suites/test_serve.py", "--collect-only", "-q", "--gpu", "cpu", "--baseline", str(baseline))
    assert result.returncode == 4 and "concurrency=64" in result.stderr  # a level the profile never runs: loose
    baseline.write_text(baseline.read_text().replace("concurrency = 64", "concurrency = 4"))
    result = run_pytest("suites/test_serve.py", "--collect-only", "-q", "--gpu", "cpu", "--baseline", str(baseline))
    assert result.returncode == 0, result.stderr  # the vllm check is another endpoint's: not this run's


def test_a_self_started_server_is_a_fresh_interpreter_as_from_a_shell(tmp_path, monkeypatch):
    """Not a child of the harness's fork server: its start-up includes its imports, as a user's
    `transformers serve` does, and it inherits no preloaded state."""
    import bench.serving.server as server

    started = []

    def start_python(context, target, args, log, new_session=False):
        started.append((context.get_start_method(), target, args[0][:2], new_session))
        raise RuntimeError("not started")

    monkeypatch.setattr(server, "start_python", start_python)
    with pytest.raises(RuntimeError):
        with server.SelfServed("transformers", str(tmp_path), "cpu", continuous_batching=True, log_path=tmp_path / "s.log"):
            pass
    assert started == [("spawn", server._serve, ["transformers", "serve"], True)]
