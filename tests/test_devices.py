import pytest

from bench.telemetry.devices import GpuInfo, parse_gpu_option, pin
from bench.errors import BenchError

TWO = [GpuInfo(0, "NVIDIA H100 80GB HBM3", "GPU-a", 85.0, "580"), GpuInfo(1, "NVIDIA H100 80GB HBM3", "GPU-b", 85.0, "580")]


@pytest.mark.parametrize("value, gpus, expected", [
    (None, [], None),          # no GPU: the CPU
    (None, TWO, [0]),          # default: GPU 0 if present
    ("cpu", TWO, None),
    ("1", TWO, [1]),
    ("0,1", TWO, [0, 1]),
    ("all", TWO, [0, 1]),
])
def test_gpu_option(value, gpus, expected):
    assert parse_gpu_option(value, gpus) == expected


@pytest.mark.parametrize("value, gpus, message", [
    ("0", [], "no NVIDIA GPU is visible"),
    ("all", [], "no NVIDIA GPU is visible"),
    ("x", [], "'x' is not a GPU index"),  # a typo is named as one on a machine without GPUs too
    ("first", TWO, "'first' is not a GPU index"),
    ("0,x", TWO, "'x' is not a GPU index"),
    ("5", TWO, "no GPU with index 5; this machine has 0 (NVIDIA H100 80GB HBM3), 1"),
])
def test_bad_gpu_option(value, gpus, message):
    with pytest.raises(BenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_gpu_option(value, gpus)


def test_pin_sets_visible_devices_in_nvidia_smi_order(monkeypatch):
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):  # set, so that the test's end restores them
        monkeypatch.setenv(name, "")
    assert pin(None) == "cpu"
    assert pin(3) == "cuda:0"
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3" and os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
