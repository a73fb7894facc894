"""PyTorch reference of the dyt-train model, in float64, with autograd.

Written from the math (LLaMA decoder, norm replaced by RMSNorm | DyT | DyISRU),
independently of the C++ code; it is the reference the C++ CPU path is tested
against. Tokens x[B,T], targets y[B,T]:

  h = E[x]                                   E = model.embed_tokens.weight [V,d]
  h = s * h          if embed_scale          s = model.embed_scale [1]
  per layer i (prefix P = model.layers.i):
    a = norm(h; P.input_layernorm)
    q, k, v = a Wq^T, a Wk^T, a Wv^T         weights stored [out, in]
    q, k = rope(q), rope(k)                  rotate-half, theta = rope_theta
    o = causal softmax(q k^T / sqrt(hd)) v   GQA: query head h reads kv head h // (Hq/Hkv)
    h = h + o Wo^T
    m = norm(h; P.post_attention_layernorm)
    h = h + down(silu(gate(m)) * up(m))
  logits = norm(h; model.norm) lm_head^T
  loss = mean cross-entropy over all B*T positions

  norms (gamma = <prefix>.weight [d], alpha = <prefix>.alpha [1],
         beta = <prefix>.bias [d] only when norm_bias):
    rmsnorm: gamma * x / sqrt(mean(x^2) + eps)          [+ beta]
    dyt:     gamma * tanh(alpha x)                       [+ beta]
    dyisru:  gamma * (alpha x) / sqrt(1 + (alpha x)^2)   [+ beta]
"""

import contextlib
import json
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

DTYPE = torch.float64
NORM_KINDS = ("rmsnorm", "dyt", "dyisru")


@contextlib.contextmanager
def precision(dtype):
    """Run the reference in another float type (e.g. float32, as a peer of the
    C++ code: what a float32 implementation of the same math achieves)."""
    global DTYPE
    old, old_default = DTYPE, torch.get_default_dtype()
    DTYPE = dtype
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        DTYPE = old
        torch.set_default_dtype(old_default)


@dataclass(frozen=True)
class Config:
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    num_hidden_layers: int
    vocab_size: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    norm: str = "dyt"
    norm_bias: bool = False
    embed_scale: bool = False

    @property
    def head_dim(self):
        return self.hidden_size // self.num_attention_heads

    def validate(self):
        if self.norm not in NORM_KINDS:
            raise ValueError(f"config: norm {self.norm!r} is not one of {NORM_KINDS}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("config: num_attention_heads must divide hidden_size")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("config: num_key_value_heads must divide num_attention_heads")
        if self.head_dim % 2:
            raise ValueError("config: head_dim must be even for RoPE")
        return self

    @staticmethod
    def from_dict(d):
        required = ("hidden_size", "intermediate_size", "num_attention_heads",
                    "num_key_value_heads", "num_hidden_layers", "vocab_size",
                    "rope_theta", "rms_norm_eps", "norm", "norm_bias", "embed_scale")
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"config.json lacks keys {missing}")
        norm = str(d["norm"]).lower()
        cfg = Config(
            hidden_size=int(d["hidden_size"]),
            intermediate_size=int(d["intermediate_size"]),
            num_attention_heads=int(d["num_attention_heads"]),
            num_key_value_heads=int(d["num_key_value_heads"]),
            num_hidden_layers=int(d["num_hidden_layers"]),
            vocab_size=int(d["vocab_size"]),
            rope_theta=float(d["rope_theta"]),
            rms_norm_eps=float(d["rms_norm_eps"]),
            norm=norm,
            norm_bias=bool(d["norm_bias"]),
            embed_scale=bool(d["embed_scale"]),
        )
        if "head_dim" in d and int(d["head_dim"]) != cfg.head_dim:
            raise ValueError(f"config.json head_dim {d['head_dim']} != hidden_size/num_attention_heads")
        return cfg.validate()

    @staticmethod
    def load(path):
        with open(path) as f:
            return Config.from_dict(json.load(f))


def norm_param_shapes(cfg, prefix):
    d = cfg.hidden_size
    shapes = {f"{prefix}.weight": (d,)}
    if cfg.norm != "rmsnorm":
        shapes[f"{prefix}.alpha"] = (1,)
    if cfg.norm_bias:
        shapes[f"{prefix}.bias"] = (d,)
    return shapes


def param_shapes(cfg):
    """Every parameter name the model has, with its shape (HF LLaMA names)."""
    d, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    hq = cfg.num_attention_heads * cfg.head_dim
    hkv = cfg.num_key_value_heads * cfg.head_dim
    s = {"model.embed_tokens.weight": (v, d)}
    if cfg.embed_scale:
        s["model.embed_scale"] = (1,)
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}"
        s.update(norm_param_shapes(cfg, f"{p}.input_layernorm"))
        s[f"{p}.self_attn.q_proj.weight"] = (hq, d)
        s[f"{p}.self_attn.k_proj.weight"] = (hkv, d)
        s[f"{p}.self_attn.v_proj.weight"] = (hkv, d)
        s[f"{p}.self_attn.o_proj.weight"] = (d, hq)
        s.update(norm_param_shapes(cfg, f"{p}.post_attention_layernorm"))
        s[f"{p}.mlp.gate_proj.weight"] = (f, d)
        s[f"{p}.mlp.up_proj.weight"] = (f, d)
        s[f"{p}.mlp.down_proj.weight"] = (d, f)
    s.update(norm_param_shapes(cfg, "model.norm"))
    s["lm_head.weight"] = (v, d)
    return s


# ---------------------------------------------------------------- building blocks

def norm_forward(x, kind, weight, alpha=None, bias=None, eps=1e-5):
    """One norm slot over the last dimension of x."""
    if kind == "rmsnorm":
        y = weight * (x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps))
    elif kind == "dyt":
        y = weight * torch.tanh(alpha * x)
    elif kind == "dyisru":
        u = alpha * x
        y = weight * (u / torch.sqrt(1.0 + u * u))
    else:
        raise ValueError(f"unknown norm kind {kind!r}")
    if bias is not None:
        y = y + bias
    return y


def rope_cos_sin(seq_len, head_dim, theta, dtype=None):
    """cos, sin of shape [T, hd]: angle(pos, j) = pos * theta^(-2(j mod hd/2)/hd)."""
    dtype = DTYPE if dtype is None else dtype
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=dtype) / head_dim))
    pos = torch.arange(seq_len, dtype=dtype)
    ang = torch.outer(pos, inv_freq)            # [T, hd/2]
    emb = torch.cat([ang, ang], dim=-1)         # [T, hd], duplicated over both halves
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def apply_rope(x, cos, sin):
    """x [..., T, hd]; cos/sin [T, hd]."""
    return x * cos + rotate_half(x) * sin


def attention(a, wq, wk, wv, wo, cfg, cos, sin):
    B, T, _ = a.shape
    hq, hkv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    q = (a @ wq.T).view(B, T, hq, hd).transpose(1, 2)    # [B, Hq, T, hd]
    k = (a @ wk.T).view(B, T, hkv, hd).transpose(1, 2)   # [B, Hkv, T, hd]
    v = (a @ wv.T).view(B, T, hkv, hd).transpose(1, 2)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    rep = hq // hkv
    k = k.repeat_interleave(rep, dim=1)                   # query head h -> kv head h // rep
    v = v.repeat_interleave(rep, dim=1)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)    # [B, Hq, T, T]
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    scores = scores.masked_fill(future, float("-inf"))
    p = torch.softmax(scores, dim=-1)
    o = (p @ v).transpose(1, 2).reshape(B, T, hq * hd)
    return o @ wo.T


def swiglu(m, wg, wu, wd):
    return (F.silu(m @ wg.T) * (m @ wu.T)) @ wd.T


# ---------------------------------------------------------------- the model

def _per_element(p, x, prefix_name, expand):
    """With `expand` (a dict), replace the broadcast parameter p by a per-element
    copy of x's shape (same values, multiplied by exact ones) whose gradient is
    kept, so that each summand of p's gradient can be inspected."""
    if expand is None or p is None:
        return p
    full = p * torch.ones_like(x)
    full.retain_grad()
    expand.setdefault(prefix_name, []).append(full)
    return full


def _norm(cfg, P, x, prefix, expand=None, probe=None):
    if probe is not None:
        probe(prefix, x)
    alpha = P[f"{prefix}.alpha"] if cfg.norm != "rmsnorm" else None
    bias = P[f"{prefix}.bias"] if cfg.norm_bias else None
    return norm_forward(
        x, cfg.norm, _per_element(P[f"{prefix}.weight"], x, f"{prefix}.weight", expand),
        alpha=_per_element(alpha, x, f"{prefix}.alpha", expand),
        bias=_per_element(bias, x, f"{prefix}.bias", expand),
        eps=cfg.rms_norm_eps)


def logits_fn(cfg, P, tokens, expand=None, probe=None):
    """Functional forward. P: name -> float64 tensor; tokens [B, T] -> logits [B, T, V].
    expand: optional dict filled with per-element copies of the norm parameters
    and the embedding scale (see _per_element); the values are unchanged.
    probe: optional callable(norm prefix, input) seeing each norm's input."""
    tokens = torch.as_tensor(tokens, dtype=torch.long)
    if tokens.min() < 0 or tokens.max() >= cfg.vocab_size:
        raise ValueError(f"token ids must lie in [0, {cfg.vocab_size})")
    T = tokens.shape[1]
    cos, sin = rope_cos_sin(T, cfg.head_dim, cfg.rope_theta)
    h = P["model.embed_tokens.weight"][tokens]
    if cfg.embed_scale:
        h = h * _per_element(P["model.embed_scale"], h, "model.embed_scale", expand)
    for i in range(cfg.num_hidden_layers):
        L = f"model.layers.{i}"
        a = _norm(cfg, P, h, f"{L}.input_layernorm", expand, probe)
        h = h + attention(a, P[f"{L}.self_attn.q_proj.weight"], P[f"{L}.self_attn.k_proj.weight"],
                          P[f"{L}.self_attn.v_proj.weight"], P[f"{L}.self_attn.o_proj.weight"],
                          cfg, cos, sin)
        m = _norm(cfg, P, h, f"{L}.post_attention_layernorm", expand, probe)
        h = h + swiglu(m, P[f"{L}.mlp.gate_proj.weight"], P[f"{L}.mlp.up_proj.weight"],
                       P[f"{L}.mlp.down_proj.weight"])
    h = _norm(cfg, P, h, "model.norm", expand, probe)
    return h @ P["lm_head.weight"].T


def loss_fn(cfg, P, tokens, targets, expand=None):
    """Mean cross-entropy over all B*T positions."""
    logits = logits_fn(cfg, P, tokens, expand)
    targets = torch.as_tensor(targets, dtype=torch.long)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="mean")


class LlamaDyT(torch.nn.Module):
    """The model as an nn.Module; parameters are float64 and keep their HF
    names through `named_tensors()` (nn.Module names can't hold dots)."""

    def __init__(self, cfg, tensors):
        super().__init__()
        self.cfg = cfg.validate()
        shapes = param_shapes(cfg)
        missing = sorted(set(shapes) - set(tensors))
        extra = sorted(set(tensors) - set(shapes))
        if missing or extra:
            raise ValueError(f"tensor set does not match the config: missing {missing}, extra {extra}")
        self.names = sorted(shapes)
        self.params = torch.nn.ParameterList()
        for n in self.names:
            v = tensors[n]
            t = (v.detach() if torch.is_tensor(v) else torch.as_tensor(np.asarray(v))).to(DTYPE).clone()
            if tuple(t.shape) != tuple(shapes[n]):
                raise ValueError(f"tensor {n}: shape {tuple(t.shape)}, expected {tuple(shapes[n])}")
            self.params.append(torch.nn.Parameter(t))

    def named_tensors(self):
        return dict(zip(self.names, self.params))

    def forward(self, tokens):
        return logits_fn(self.cfg, self.named_tensors(), tokens)

    def loss(self, tokens, targets, expand=None):
        return loss_fn(self.cfg, self.named_tensors(), tokens, targets, expand)


def loss_and_grads(cfg, tensors, tokens, targets, summands=False):
    """Run forward + backward in float64.

    cfg: Config (or a config.json dict); tensors: name -> array (numpy or torch);
    tokens, targets: [B, T] integer arrays. Returns (loss: float,
    grads: name -> float64 numpy array, same names and shapes as tensors).

    With summands=True also returns S: for every parameter that is broadcast
    over positions (norm weight/alpha/bias, embed_scale), S[name] has its shape
    and holds the sum over positions of the |summands| of its gradient, so
    ||S|| / ||grad|| is the condition number of that reduction: how much of it
    cancels. A low-precision implementation can only be expected to match the
    gradient to about eps * ||S||.
    """
    if isinstance(cfg, dict):
        cfg = Config.from_dict(cfg)
    model = LlamaDyT(cfg, tensors)
    expand = {} if summands else None
    loss = model.loss(torch.as_tensor(np.asarray(tokens), dtype=torch.long),
                      torch.as_tensor(np.asarray(targets), dtype=torch.long), expand)
    loss.backward()
    grads = {}
    for n, t in model.named_tensors().items():
        g = t.grad
        grads[n] = np.zeros(tuple(t.shape)) if g is None else g.detach().numpy().copy()
    if not summands:
        return float(loss.detach()), grads
    S = {}
    for n, fulls in expand.items():
        shape = tuple(model.named_tensors()[n].shape)
        acc = np.zeros(shape)
        for full in fulls:
            a = full.grad.detach().abs()
            acc += a.reshape(-1, *shape).sum(dim=0).numpy() if shape != (1,) else float(a.sum())
        S[n] = acc
    return float(loss.detach()), grads, S


def dyt_saturation(cfg, tensors, tokens, threshold=9.0):
    """For each DyT/DyISRU norm (by prefix): the fraction of its inputs with
    |alpha x| > threshold on this batch. From 9 on, tanh rounds to 1 in
    float32, so the input passes nothing but its sign."""
    if isinstance(cfg, dict):
        cfg = Config.from_dict(cfg)
    if cfg.norm == "rmsnorm":
        return {}
    P = LlamaDyT(cfg, tensors).named_tensors()
    out = {}

    def probe(prefix, x):
        u = (P[f"{prefix}.alpha"] * x).detach().abs()
        out[prefix] = float((u > threshold).double().mean())

    with torch.no_grad():
        logits_fn(cfg, P, torch.as_tensor(np.asarray(tokens), dtype=torch.long), probe=probe)
    return out


def init_tensors(cfg, seed=0, std=0.02, alpha_attn=1.0, alpha_other=1.0):
    """A random LLaMA-style initialisation (for self-tests, not to mirror the C++ init)."""
    rng = np.random.default_rng(seed)
    out = {}
    for n, shape in param_shapes(cfg).items():
        if n == "model.embed_scale":
            out[n] = np.full(shape, math.sqrt(cfg.hidden_size))
        elif n.endswith(".alpha"):
            out[n] = np.full(shape, alpha_attn if "input_layernorm" in n else alpha_other)
        elif n.endswith(".bias"):
            out[n] = np.zeros(shape)
        elif len(shape) == 1:
            out[n] = np.ones(shape)
        else:
            out[n] = rng.normal(0.0, std, size=shape)
    return out
