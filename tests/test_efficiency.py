import pytest

from bench.analysis.roofline import BYTES_PER_PARAM, Shape, mbu, mfu
from bench.models.replica import model_config


def tiny_config(vocab=1000):
    from bench.models.tiny import model_config as tiny

    return tiny(vocab_size=vocab)


@pytest.mark.parametrize("config", [tiny_config(), model_config("gpt-oss-20b")], ids=["tiny", "20b"])
def test_total_parameters_match_the_real_module(config):
    import torch
    from transformers import GptOssForCausalLM

    with torch.device("meta"):
        model = GptOssForCausalLM(config)
    assert Shape.from_config(config).total_params == sum(p.numel() for p in model.parameters())


def test_tiny_counts_by_hand():
    s = Shape.from_config(tiny_config(vocab=1000))
    attention = 128 * (128 + 64 + 64) + (128 + 64 + 64) + 128 * 128 + 128  # q,k,v with biases; o with bias
    expert = 128 * 256 + 256 + 128 * 128 + 128  # gate_up (gate and up fused) and down, with biases
    router = 128 * 8 + 8
    assert (s.attention_params, s.expert_params, s.router_params) == (attention, expert, router)
    assert s.active_params == 4 * (attention + router + 2 * expert) + 1000 * 128
    assert s.decode_step_bytes(1, 0, "bf16") == 4 * (attention + 2 * expert) * 2 + 1000 * 128 * 2


def test_gpt_oss_20b_has_the_published_3_6_billion_active_parameters():
    s = Shape.from_config(model_config("gpt-oss-20b"))
    assert s.total_params == 20_914_757_184
    assert s.active_params == pytest.approx(3.6e9, rel=0.01)


def test_experts_touched_grows_from_k_to_all_with_the_batch():
    s = Shape.from_config(model_config("gpt-oss-20b"))
    assert s.experts_touched(1) == pytest.approx(4)
    assert s.experts_touched(2) == pytest.approx(32 * (1 - (28 / 32) ** 2))
    assert s.experts_touched(200) == pytest.approx(32, rel=1e-6)


def test_kv_cache_reads_respect_the_sliding_window():
    s = Shape.from_config(model_config("gpt-oss-20b"))
    per_layer_token = 2 * 8 * 64 * 2  # k and v, 8 KV heads of 64, bf16
    assert s.kv_bytes_per_token(1000) == per_layer_token * (12 * 1000 + 12 * 128)
    assert s.kv_bytes_per_token(100) == per_layer_token * 24 * 100


def test_quantization_shrinks_the_bytes_of_a_decode_step():
    s = Shape.from_config(model_config("gpt-oss-20b"))
    four, sixteen = s.decode_step_bytes(1, 0, "4bit"), s.decode_step_bytes(1, 0, "bf16")
    head = 201088 * 2880 * 2
    assert (four - head) / (sixteen - head) == pytest.approx(BYTES_PER_PARAM["4bit"] / 2)


def test_utilization_fractions():
    s = Shape.from_config(model_config("gpt-oss-20b"))
    step = s.decode_step_bytes(1, 200, "4bit")
    assert mbu(s, 1, 200, "4bit", step_s=step / 3e12, copy_gbps=3000) == pytest.approx(1.0)
    assert mfu(6 * s.active_params, 1000, 787) == pytest.approx(6 * s.active_params * 1000 / 787e12)


def test_price_table_takes_the_longest_matching_gpu_name(tmp_path):
    from bench.analysis.prices import price_per_hour

    table = tmp_path / "prices.toml"
    table.write_text('[prices]\n"A100" = 2.0\n"A100-SXM4-80GB" = 3.0\n"RTX 3090" = 0.021\n')
    assert price_per_hour(str(table), "NVIDIA A100-SXM4-80GB") == 3.0
    assert price_per_hour(str(table), "NVIDIA A100-PCIE-40GB") == 2.0
    assert price_per_hour(str(table), "NVIDIA GeForce RTX 3090") == 0.021
    assert price_per_hour(str(table), "cpu") is None and price_per_hour("2.5", "cpu") == 2.5
