"""transformers + peft + trl, on the CPU or a CUDA GPU (4-bit there through bitsandbytes)."""

from __future__ import annotations


from bench.backends import ATTENTION_TARGETS, EXPERT_PARAMETERS, Loaded, LoraSettings
from bench.backends.common import TransformersBackend
from bench.models import ModelSource, local_weights


class HFBackend(TransformersBackend):
    name = "hf"

    def _load(self, source: ModelSource) -> Loaded:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        target = local_weights(source, self.device)
        kwargs = {"dtype": self.dtype}
        info = {"engine": "transformers", "dtype": str(self.dtype).removeprefix("torch.")}
        if self.cuda:
            kwargs["device_map"] = {"": self.device}
            if self.four_bit(source):
                from transformers import BitsAndBytesConfig

                # bitsandbytes quantizes nn.Linear (attention); GPT-OSS's fused experts are 3-D
                # parameters it does not touch, so they stay bf16: say so in the report.
                kwargs["quantization_config"] = BitsAndBytesConfig(
                    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=self.dtype)
                info["quantization"] = "bitsandbytes nf4 on attention; experts bf16"
        model = AutoModelForCausalLM.from_pretrained(target, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(target)
        return Loaded(model, tokenizer, source, info)

    def add_lora(self, loaded: Loaded, lora: LoraSettings) -> Loaded:
        from peft import LoraConfig, get_peft_model

        model = loaded.model
        if self.cuda:
            # Not peft's prepare_model_for_kbit_training: it casts every non-quantized parameter to
            # fp32, and GPT-OSS's experts (bitsandbytes leaves them bf16) would double to 80 GB.
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
                            target_modules=list(ATTENTION_TARGETS), target_parameters=list(EXPERT_PARAMETERS),
                            task_type="CAUSAL_LM")
        import torch

        torch.manual_seed(lora.seed)
        peft_model = get_peft_model(model, config)
        info = {**loaded.info, "lora_targets": "q,k,v,o + experts gate_up_proj, down_proj (peft target_parameters)"}
        return Loaded(peft_model, loaded.tokenizer, loaded.source, info)
