"""Hugging Face model of a dyt-train model whose norms are DyT or DyISRU.

transformers' Llama with every RMSNorm (input_layernorm,
post_attention_layernorm, model.norm) replaced, and a learnable scalar on the
embedding output; attention, RoPE, the MLP and the LM head are Llama's own.
The math is dyt-train's (kernels/cpu/norms.cc, trainer/model.cc):

    DyT:     y = weight * tanh(alpha * x)                    [+ bias]
    DyISRU:  y = weight * (alpha x) / sqrt(1 + (alpha x)^2)  [+ bias]
    h0 = embed_scale * embed_tokens(input_ids)               (when embed_scale)

Tensor names are dyt-train's: model.layers.N.input_layernorm.{weight,alpha,bias},
model.norm.*, model.embed_scale. The scale multiplies inputs_embeds too when
they are passed instead of input_ids (as Gemma's normalizer does).
The source lives in the dyt-train repository, trainer/hf/.
"""

import math

import torch
from torch import nn
from transformers import LlamaForCausalLM, LlamaModel, LlamaPreTrainedModel

from .configuration_dyt_llama import DytLlamaConfig


class DytNorm(nn.Module):
    """DyT or DyISRU over the last dimension: one scalar alpha, weight and an optional bias per channel."""

    def __init__(self, hidden_size, kind, bias, alpha_init):
        super().__init__()
        self.kind = kind
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.alpha = nn.Parameter(torch.full((1,), float(alpha_init)))
        self.bias = nn.Parameter(torch.zeros(hidden_size)) if bias else None

    def forward(self, hidden_states):
        # Computed in float32 whatever the model's dtype, as LlamaRMSNorm does.
        input_dtype = hidden_states.dtype
        u = self.alpha.float() * hidden_states.float()
        if self.kind == "dyt":
            f = torch.tanh(u)
        else:
            f = u / torch.sqrt(1.0 + u * u)
        y = self.weight * f.to(input_dtype)
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self):
        return f"{self.kind}, {tuple(self.weight.shape)}, bias={self.bias is not None}"


class DytLlamaPreTrainedModel(LlamaPreTrainedModel):
    config_class = DytLlamaConfig


class DytLlamaModel(DytLlamaPreTrainedModel, LlamaModel):
    def __init__(self, config):
        LlamaModel.__init__(self, config)
        d = config.hidden_size

        def norm(alpha_init):
            return DytNorm(d, config.norm, config.norm_bias, alpha_init)

        for layer in self.layers:
            layer.input_layernorm = norm(config.alpha_init_attention)
            layer.post_attention_layernorm = norm(config.alpha_init_ffn)
        self.norm = norm(config.alpha_init_final)
        # dyt-train initialises the scale to sqrt(hidden_size).
        self.embed_scale = nn.Parameter(torch.full((1,), math.sqrt(d))) if config.embed_scale else None
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, **kwargs):
        if self.embed_scale is not None:
            if (input_ids is None) == (inputs_embeds is None):
                raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
            if inputs_embeds is None:
                inputs_embeds = self.embed_tokens(input_ids)
            inputs_embeds = inputs_embeds * self.embed_scale.to(inputs_embeds.dtype)
            input_ids = None
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               past_key_values=past_key_values, inputs_embeds=inputs_embeds, **kwargs)


class DytLlamaForCausalLM(DytLlamaPreTrainedModel, LlamaForCausalLM):
    def __init__(self, config):
        # LlamaForCausalLM's own __init__ would build a LlamaModel first, only
        # to be replaced: set up the same attributes around a DytLlamaModel.
        DytLlamaPreTrainedModel.__init__(self, config)
        self.model = DytLlamaModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
