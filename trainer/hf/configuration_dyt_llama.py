"""Hugging Face configuration of a dyt-train model whose norms are DyT or DyISRU.

dyt-export (and dyt-train at the end of a run) writes this file beside
model.safetensors and names it in config.json's auto_map, so that

    AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)

builds the model (modeling_dyt_llama.py). It is LlamaConfig plus what
LlamaConfig lacks: the norm kind, β, the embedding scale and α₀.
The source lives in the dyt-train repository, trainer/hf/.
"""

from transformers import LlamaConfig

NORM_KINDS = ("dyt", "dyisru")


class DytLlamaConfig(LlamaConfig):
    model_type = "dyt_llama"

    def __init__(
        self,
        norm="dyt",
        norm_bias=False,
        embed_scale=True,
        alpha_init_attention=1.0,
        alpha_init_ffn=1.0,
        alpha_init_final=1.0,
        **kwargs,
    ):
        norm = str(norm).lower()
        if norm not in NORM_KINDS:
            raise ValueError(f"DytLlamaConfig: norm {norm!r} is not one of {NORM_KINDS} "
                             "(an RMSNorm model is a plain LlamaConfig)")
        self.norm = norm
        self.norm_bias = bool(norm_bias)
        self.embed_scale = bool(embed_scale)
        self.alpha_init_attention = float(alpha_init_attention)
        self.alpha_init_ffn = float(alpha_init_ffn)
        self.alpha_init_final = float(alpha_init_final)
        super().__init__(**kwargs)
