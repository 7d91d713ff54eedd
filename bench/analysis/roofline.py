"""How close a measured figure is to what the hardware allows, from the model's config alone.

Decode is bound by bytes: every step reads the weights it uses once for the whole batch (for a
mixture of experts, only the experts some token of the batch is routed to) plus each sequence's
KV cache. Training and prefill are bound by FLOPs: 6 N per trained token and 2 N per prefilled
token on the active parameters N (a LoRA fine-tune with frozen weights skips the weight
gradients, but gradient checkpointing recomputes the forward pass, so 6 N stays the count), plus
attention. Achieved bandwidth and FLOP rate are given as fractions of the GPU's measured ceilings
(MBU, MFU). Pure: config numbers in, figures out.
"""

from __future__ import annotations

from dataclasses import dataclass

# Bytes per weight: bf16 2; bitsandbytes 4-bit (nf4, blocksize 64, one fp32 absmax per block) 0.5 + 4/64.
BYTES_PER_PARAM = {"fp32": 4.0, "bf16": 2.0, "4bit": 0.5 + 4 / 64}
KV_BYTES = 2  # the KV cache is bf16


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    experts: int
    active_experts: int
    expert_dim: int
    vocab: int
    sliding_window: int
    sliding_layers: int

    @classmethod
    def from_config(cls, c) -> "Shape":
        get = c.get if isinstance(c, dict) else (lambda k, d=None: getattr(c, k, d))
        types = get("layer_types") or []
        return cls(get("num_hidden_layers"), get("hidden_size"), get("num_attention_heads"), get("num_key_value_heads"),
                   get("head_dim"), get("num_local_experts"), get("num_experts_per_tok"), get("intermediate_size"),
                   get("vocab_size"), get("sliding_window") or 0, sum(1 for t in types if t == "sliding_attention"))

    @property
    def attention_params(self) -> int:
        """q, k, v, o of one layer (biases included)."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return self.hidden * (q + 2 * kv) + (q + 2 * kv) + q * self.hidden + self.hidden

    @property
    def expert_params(self) -> int:
        """One expert: gate_up (gate and up fused) and down, with biases."""
        return self.hidden * 2 * self.expert_dim + 2 * self.expert_dim + self.expert_dim * self.hidden + self.hidden

    @property
    def router_params(self) -> int:
        return self.hidden * self.experts + self.experts

    @property
    def active_params(self) -> int:
        """Parameters one token multiplies with: attention, router, its experts, and the LM head."""
        per_layer = self.attention_params + self.router_params + self.active_experts * self.expert_params
        return self.layers * per_layer + self.vocab * self.hidden

    @property
    def total_params(self) -> int:
        norms_and_sinks = 2 * self.hidden + self.heads
        per_layer = self.attention_params + self.router_params + self.experts * self.expert_params + norms_and_sinks
        return self.layers * per_layer + 2 * self.vocab * self.hidden + self.hidden

    def experts_touched(self, batch: int) -> float:
        """Expected distinct experts per layer when `batch` tokens each pick `active_experts` of them
        uniformly (random weights route close to uniformly; a trained router concentrates more)."""
        return self.experts * (1 - (1 - self.active_experts / self.experts) ** batch)

    def kv_bytes_per_token(self, context: int) -> float:
        """KV cache read by one decode step of one sequence with `context` tokens before it."""
        per_layer_token = 2 * self.kv_heads * self.head_dim * KV_BYTES
        full = self.layers - self.sliding_layers
        window = min(context, self.sliding_window) if self.sliding_window else context
        return per_layer_token * (full * context + self.sliding_layers * window)

    def weight_bytes(self, precision: str) -> float:
        """All linear weights (every expert) in `precision`, the LM head in bf16."""
        linear = self.layers * (self.attention_params + self.experts * self.expert_params)
        return linear * BYTES_PER_PARAM[precision] + self.vocab * self.hidden * BYTES_PER_PARAM["bf16"]

    def decode_step_bytes(self, batch: int, context: int, precision: str) -> float:
        """Bytes one decode step reads: the weights the batch uses, once, plus every sequence's KV."""
        w = BYTES_PER_PARAM[precision]
        linear = self.layers * (self.attention_params + self.experts_touched(batch) * self.expert_params) * w
        head = self.vocab * self.hidden * BYTES_PER_PARAM["bf16"]  # the LM head stays bf16
        return linear + head + batch * self.kv_bytes_per_token(context)

    def attention_flops_per_token(self, context: int) -> float:
        """Scores and weighted sum: 4 * heads * head_dim * context per layer (forward)."""
        full = self.layers - self.sliding_layers
        window = min(context, self.sliding_window) if self.sliding_window else context
        return 4 * self.heads * self.head_dim * (full * context + self.sliding_layers * window)

    def train_flops_per_token(self, seq_len: int) -> float:
        return 6 * self.active_params + 3 * self.attention_flops_per_token(seq_len // 2)

    def prefill_flops_per_token(self, prompt_len: int) -> float:
        return 2 * self.active_params + self.attention_flops_per_token(prompt_len // 2)


def mbu(shape: Shape, batch: int, context: int, precision: str, step_s: float, copy_gbps: float) -> float:
    return shape.decode_step_bytes(batch, context, precision) / step_s / (copy_gbps * 1e9)


def mfu(flops_per_token: float, tokens_per_s: float, matmul_tflops: float) -> float:
    return flops_per_token * tokens_per_s / (matmul_tflops * 1e12)


def roofline_point(flops: float, bytes_moved: float, seconds: float) -> tuple[float, float]:
    """(arithmetic intensity in FLOP/byte, achieved TFLOP/s) of one timed region."""
    return flops / bytes_moved, flops / seconds / 1e12
