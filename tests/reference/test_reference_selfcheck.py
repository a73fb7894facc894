"""Self-checks of the PyTorch reference (no dyt-grad needed).

Run: /usr/bin/python3 tests/reference/test_reference_selfcheck.py
Checks that the reference is right on its own terms before it is used to
judge the C++ model: autograd of the norms against finite differences, RoPE
against an explicit complex rotation, the vectorised model against a naive
per-position loop, causal masking, GQA head mapping, a whole-model gradcheck,
and the safetensors reader/writer.
"""

import math
import os
import struct
import json
import sys
import tempfile
import unittest

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import llama_dyt as R  # noqa: E402
import safetensors_io as st  # noqa: E402

torch.set_default_dtype(torch.float64)


def tiny_cfg(**kw):
    base = dict(hidden_size=16, intermediate_size=20, num_attention_heads=4, num_key_value_heads=2,
                num_hidden_layers=2, vocab_size=13, rope_theta=10000.0, rms_norm_eps=1e-5,
                norm="rmsnorm", norm_bias=False, embed_scale=False)
    base.update(kw)
    return R.Config(**base).validate()


def perturbed_tensors(cfg, seed=0):
    """Random init with γ, α, β, embed scale moved off their defaults."""
    t = R.init_tensors(cfg, seed=seed, std=0.3)
    rng = np.random.default_rng(seed + 100)
    for n, v in t.items():
        if n.endswith(".alpha"):
            t[n] = v * rng.uniform(0.5, 1.5, size=v.shape)
        elif n.endswith(".bias"):
            t[n] = 0.2 * rng.normal(size=v.shape)
        elif n == "model.embed_scale":
            t[n] = v * rng.uniform(0.8, 1.2, size=v.shape)
        elif v.ndim == 1:
            t[n] = v + 0.3 * rng.normal(size=v.shape)
    return t


# ---------------------------------------------------------------- naive model

def naive_logits(cfg, t, tokens):
    """Per-position, per-head, per-element loops in numpy float64."""
    B, T = tokens.shape
    d, hq, hkv, hd = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    half = hd // 2

    def norm(x, prefix):  # x [d]
        g = t[prefix + ".weight"]
        y = np.zeros(d)
        if cfg.norm == "rmsnorm":
            ms = sum(x[j] * x[j] for j in range(d)) / d
            r = 1.0 / math.sqrt(ms + cfg.rms_norm_eps)
            for j in range(d):
                y[j] = g[j] * x[j] * r
        else:
            al = t[prefix + ".alpha"][0]
            for j in range(d):
                u = al * x[j]
                y[j] = g[j] * (math.tanh(u) if cfg.norm == "dyt" else u / math.sqrt(1 + u * u))
        if cfg.norm_bias:
            y = y + t[prefix + ".bias"]
        return y

    def rope(vec, pos):  # vec [hd]: pairs (j, j + hd/2)
        out = np.zeros(hd)
        for j in range(half):
            ang = pos * cfg.rope_theta ** (-2.0 * j / hd)
            c, s = math.cos(ang), math.sin(ang)
            out[j] = vec[j] * c - vec[j + half] * s
            out[j + half] = vec[j + half] * c + vec[j] * s
        return out

    def matvec(W, x):
        return np.array([sum(W[o, i] * x[i] for i in range(W.shape[1])) for o in range(W.shape[0])])

    logits = np.zeros((B, T, cfg.vocab_size))
    for b in range(B):
        h = [t["model.embed_tokens.weight"][tokens[b, s]].copy() for s in range(T)]
        if cfg.embed_scale:
            h = [x * t["model.embed_scale"][0] for x in h]
        for L in range(cfg.num_hidden_layers):
            P = f"model.layers.{L}"
            a = [norm(x, P + ".input_layernorm") for x in h]
            q = [matvec(t[P + ".self_attn.q_proj.weight"], x) for x in a]
            k = [matvec(t[P + ".self_attn.k_proj.weight"], x) for x in a]
            v = [matvec(t[P + ".self_attn.v_proj.weight"], x) for x in a]
            new_h = []
            for s in range(T):
                o = np.zeros(hq * hd)
                for head in range(hq):
                    kvh = head // (hq // hkv)
                    qs = rope(q[s][head * hd:(head + 1) * hd], s)
                    sc = []
                    for r in range(s + 1):  # causal: keys 0..s
                        kr = rope(k[r][kvh * hd:(kvh + 1) * hd], r)
                        sc.append(sum(qs[j] * kr[j] for j in range(hd)) / math.sqrt(hd))
                    mx = max(sc)
                    w = [math.exp(z - mx) for z in sc]
                    Z = sum(w)
                    for r in range(s + 1):
                        o[head * hd:(head + 1) * hd] += (w[r] / Z) * v[r][kvh * hd:(kvh + 1) * hd]
                new_h.append(h[s] + matvec(t[P + ".self_attn.o_proj.weight"], o))
            h = new_h
            out = []
            for s in range(T):
                m = norm(h[s], P + ".post_attention_layernorm")
                g = matvec(t[P + ".mlp.gate_proj.weight"], m)
                u = matvec(t[P + ".mlp.up_proj.weight"], m)
                act = np.array([g[j] / (1 + math.exp(-g[j])) * u[j] for j in range(len(g))])
                out.append(h[s] + matvec(t[P + ".mlp.down_proj.weight"], act))
            h = out
        for s in range(T):
            logits[b, s] = matvec(t["lm_head.weight"], norm(h[s], "model.norm"))
    return logits


def naive_loss(logits, targets):
    tot = 0.0
    B, T, _ = logits.shape
    for b in range(B):
        for s in range(T):
            z = logits[b, s]
            mx = z.max()
            tot += mx + math.log(sum(math.exp(x - mx) for x in z)) - z[targets[b, s]]
    return tot / (B * T)


# ---------------------------------------------------------------- tests

class NormTests(unittest.TestCase):
    def test_gradcheck_all_norms(self):
        g = torch.Generator().manual_seed(0)
        for kind in R.NORM_KINDS:
            for bias in (False, True):
                with self.subTest(kind=kind, bias=bias):
                    x = (2 * torch.randn(2, 3, 6, generator=g)).requires_grad_()
                    w = (1 + 0.3 * torch.randn(6, generator=g)).requires_grad_()
                    a = torch.tensor([0.7], requires_grad=True)
                    b = (0.2 * torch.randn(6, generator=g)).requires_grad_()
                    inputs = [x, w] + ([a] if kind != "rmsnorm" else []) + ([b] if bias else [])

                    def f(*args):
                        it = iter(args)
                        xx, ww = next(it), next(it)
                        aa = next(it) if kind != "rmsnorm" else None
                        bb = next(it) if bias else None
                        return R.norm_forward(xx, kind, ww, alpha=aa, bias=bb, eps=1e-5)

                    self.assertTrue(torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-6))

    def test_norm_values(self):
        x = torch.tensor([[-3.0, -0.5, 0.0, 0.25, 2.0, 10.0]])
        w = torch.tensor([1.0, 2.0, -1.0, 0.5, 1.5, 1.0])
        a = torch.tensor([0.8])
        b = torch.arange(6.0) / 10
        dyt = R.norm_forward(x, "dyt", w, alpha=a, bias=b)
        isru = R.norm_forward(x, "dyisru", w, alpha=a)
        rms = R.norm_forward(x, "rmsnorm", w, eps=1e-5)
        for j in range(6):
            xv, u = float(x[0, j]), 0.8 * float(x[0, j])
            self.assertAlmostEqual(float(dyt[0, j]), float(w[j]) * math.tanh(u) + j / 10, places=14)
            self.assertAlmostEqual(float(isru[0, j]), float(w[j]) * u / math.sqrt(1 + u * u), places=14)
            ms = float((x ** 2).mean())
            self.assertAlmostEqual(float(rms[0, j]), float(w[j]) * xv / math.sqrt(ms + 1e-5), places=13)
        # DyT and DyISRU share the slope alpha*gamma at the origin.
        h = 1e-7
        z = torch.tensor([[h]])
        one = torch.tensor([1.0])
        for kind in ("dyt", "dyisru"):
            self.assertAlmostEqual(float(R.norm_forward(z, kind, one, alpha=a)) / h, 0.8, places=6)


class RopeTests(unittest.TestCase):
    def test_rope_equals_complex_rotation(self):
        T, hd, theta = 7, 8, 10000.0
        x = torch.randn(2, 3, T, hd, generator=torch.Generator().manual_seed(11))
        cos, sin = R.rope_cos_sin(T, hd, theta)
        y = R.apply_rope(x, cos, sin)
        half = hd // 2
        z = torch.complex(x[..., :half], x[..., half:])  # pair j with j + hd/2
        j = torch.arange(half, dtype=torch.float64)
        freq = theta ** (-2.0 * j / hd)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]
        zr = z * torch.polar(torch.ones_like(ang), ang)
        expect = torch.cat([zr.real, zr.imag], dim=-1)
        torch.testing.assert_close(y, expect, rtol=0, atol=1e-13)

    def test_rope_position_zero_is_identity_and_norm_preserving(self):
        x = torch.randn(5, 6, generator=torch.Generator().manual_seed(12))
        cos, sin = R.rope_cos_sin(5, 6, 500.0)
        y = R.apply_rope(x, cos, sin)
        torch.testing.assert_close(y[0], x[0], rtol=0, atol=0)
        torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), rtol=1e-13, atol=0)

    def test_rope_scores_depend_on_relative_position(self):
        hd, theta = 8, 10000.0
        g = torch.Generator().manual_seed(13)
        q, k = torch.randn(hd, generator=g), torch.randn(hd, generator=g)
        cos, sin = R.rope_cos_sin(12, hd, theta)
        rq = R.apply_rope(q.expand(12, hd), cos, sin)
        rk = R.apply_rope(k.expand(12, hd), cos, sin)
        self.assertAlmostEqual(float(rq[5] @ rk[2]), float(rq[9] @ rk[6]), places=12)
        self.assertAlmostEqual(float(rq[3] @ rk[3]), float(q @ k), places=12)


class ModelTests(unittest.TestCase):
    def check_against_naive(self, cfg, seed):
        t = perturbed_tensors(cfg, seed)
        rng = np.random.default_rng(seed)
        tokens = rng.integers(0, cfg.vocab_size, size=(2, 5))
        targets = rng.integers(0, cfg.vocab_size, size=(2, 5))
        model = R.LlamaDyT(cfg, t)
        with torch.no_grad():
            logits = model(torch.as_tensor(tokens)).numpy()
            loss = float(model.loss(torch.as_tensor(tokens), torch.as_tensor(targets)))
        ref = naive_logits(cfg, t, tokens)
        np.testing.assert_allclose(logits, ref, rtol=1e-11, atol=1e-11)
        self.assertAlmostEqual(loss, naive_loss(ref, targets), places=11)

    def test_rmsnorm_matches_naive_loop(self):
        self.check_against_naive(tiny_cfg(), seed=1)

    def test_dyt_bias_embed_scale_matches_naive_loop(self):
        self.check_against_naive(tiny_cfg(norm="dyt", norm_bias=True, embed_scale=True), seed=2)

    def test_dyisru_mha_matches_naive_loop(self):
        self.check_against_naive(tiny_cfg(norm="dyisru", num_key_value_heads=4, rope_theta=77.0), seed=3)

    def test_causal_mask(self):
        for norm in R.NORM_KINDS:
            cfg = tiny_cfg(norm=norm)
            model = R.LlamaDyT(cfg, perturbed_tensors(cfg, 4))
            tok = torch.as_tensor(np.random.default_rng(4).integers(0, cfg.vocab_size, size=(2, 9)))
            tok2 = tok.clone()
            tok2[:, 6] = (tok2[:, 6] + 5) % cfg.vocab_size
            with torch.no_grad():
                a, b = model(tok), model(tok2)
            torch.testing.assert_close(a[:, :6], b[:, :6], rtol=0, atol=0)
            self.assertGreater(float((a[:, 6:] - b[:, 6:]).abs().max()), 1e-6)

    def test_gqa_equals_mha_with_repeated_kv_heads(self):
        cfg = tiny_cfg(norm="dyt", num_attention_heads=4, num_key_value_heads=2)
        mha = tiny_cfg(norm="dyt", num_attention_heads=4, num_key_value_heads=4)
        t = perturbed_tensors(cfg, 5)
        t2 = dict(t)
        hd, rep = cfg.head_dim, 2
        for L in range(cfg.num_hidden_layers):
            for w in ("k_proj", "v_proj"):
                n = f"model.layers.{L}.self_attn.{w}.weight"
                heads = t[n].reshape(cfg.num_key_value_heads, hd, -1)
                t2[n] = np.repeat(heads, rep, axis=0).reshape(-1, cfg.hidden_size)  # kv head h//rep
        tok = torch.as_tensor(np.random.default_rng(5).integers(0, cfg.vocab_size, size=(2, 6)))
        with torch.no_grad():
            torch.testing.assert_close(R.LlamaDyT(cfg, t)(tok), R.LlamaDyT(mha, t2)(tok), rtol=1e-12, atol=1e-12)

    def test_whole_model_gradcheck(self):
        for norm, bias, scale in (("rmsnorm", False, True), ("dyt", True, True), ("dyisru", True, False)):
            with self.subTest(norm=norm):
                cfg = tiny_cfg(hidden_size=8, intermediate_size=6, num_attention_heads=2, num_key_value_heads=1,
                               num_hidden_layers=1, vocab_size=7, norm=norm, norm_bias=bias, embed_scale=scale)
                t = perturbed_tensors(cfg, 6)
                names = sorted(t)
                rng = np.random.default_rng(6)
                tok = torch.as_tensor(rng.integers(0, 7, size=(2, 4)))
                tgt = torch.as_tensor(rng.integers(0, 7, size=(2, 4)))

                def f(*vals):
                    return R.loss_fn(cfg, dict(zip(names, vals)), tok, tgt)

                inputs = [torch.tensor(t[n], requires_grad=True) for n in names]
                self.assertTrue(torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-5))

    def test_loss_and_grads_names_and_zero_rows(self):
        cfg = tiny_cfg(norm="dyt", norm_bias=True, embed_scale=True)
        t = perturbed_tensors(cfg, 7)
        tok = np.array([[0, 1, 2, 1]])
        tgt = np.array([[1, 2, 1, 3]])
        loss, g = R.loss_and_grads(cfg, t, tok, tgt)
        self.assertTrue(math.isfinite(loss))
        self.assertEqual(set(g), set(R.param_shapes(cfg)))
        for n, shape in R.param_shapes(cfg).items():
            self.assertEqual(g[n].shape, tuple(shape), n)
        emb = g["model.embed_tokens.weight"]
        self.assertEqual(float(np.abs(emb[3:]).max()), 0.0)  # rows of unused tokens
        self.assertGreater(float(np.abs(emb[:3]).min(axis=1).max()), 0.0)
        for n in g:
            if n != "model.embed_tokens.weight" and n != "lm_head.weight":
                self.assertGreater(float(np.abs(g[n]).max()), 0.0, n)

    def test_summands_mode_changes_nothing_and_bounds_grads(self):
        for norm, bias in (("rmsnorm", True), ("dyt", True), ("dyisru", False)):
            cfg = tiny_cfg(norm=norm, norm_bias=bias, embed_scale=True)
            t = perturbed_tensors(cfg, 8)
            rng = np.random.default_rng(8)
            tok, tgt = rng.integers(0, 13, size=(2, 6)), rng.integers(0, 13, size=(2, 6))
            loss, g = R.loss_and_grads(cfg, t, tok, tgt)
            loss2, g2, S = R.loss_and_grads(cfg, t, tok, tgt, summands=True)
            self.assertEqual(loss, loss2)
            broadcast = {n for n, s in R.param_shapes(cfg).items() if len(s) == 1}
            self.assertEqual(set(S), broadcast)
            for n in g:
                np.testing.assert_allclose(g2[n], g[n], rtol=1e-12, atol=1e-300, err_msg=n)
            for n in S:
                self.assertEqual(S[n].shape, g[n].shape, n)
                self.assertTrue(np.all(S[n] >= np.abs(g[n]) * (1 - 1e-12)), n)
                self.assertGreater(float(S[n].sum()), 0.0, n)

    def test_dyt_saturation_counts_inputs_beyond_the_threshold(self):
        cfg = tiny_cfg(norm="dyt", embed_scale=False)
        t = perturbed_tensors(cfg, 9)
        tok = np.random.default_rng(9).integers(0, 13, size=(2, 6))
        self.assertEqual(R.dyt_saturation(tiny_cfg(norm="rmsnorm"), perturbed_tensors(tiny_cfg(norm="rmsnorm")), tok), {})
        low = R.dyt_saturation(cfg, t, tok)
        self.assertEqual(set(low), {"model.layers.0.input_layernorm", "model.layers.0.post_attention_layernorm",
                                    "model.layers.1.input_layernorm", "model.layers.1.post_attention_layernorm",
                                    "model.norm"})
        # The first norm sees the embedding rows: scaled so every |alpha x|
        # exceeds the threshold, its fraction is 1; at 0 it is 0.
        big = dict(t)
        alpha = float(np.asarray(t["model.layers.0.input_layernorm.alpha"])[0])
        emb = np.asarray(t["model.embed_tokens.weight"], dtype=np.float64)
        big["model.embed_tokens.weight"] = emb * (10.0 / (abs(alpha) * np.abs(emb).min()))
        self.assertEqual(R.dyt_saturation(cfg, big, tok)["model.layers.0.input_layernorm"], 1.0)
        self.assertEqual(R.dyt_saturation(cfg, t, tok, threshold=1e9)["model.layers.0.input_layernorm"], 0.0)

    def test_param_shapes_names(self):
        cfg = tiny_cfg(norm="rmsnorm")
        s = R.param_shapes(cfg)
        self.assertNotIn("model.norm.alpha", s)
        self.assertNotIn("model.embed_scale", s)
        self.assertEqual(s["model.layers.1.self_attn.k_proj.weight"], (8, 16))
        self.assertEqual(s["model.layers.1.self_attn.o_proj.weight"], (16, 16))
        self.assertEqual(len(s), 2 + 2 * 9 + 1)
        s = R.param_shapes(tiny_cfg(norm="dyisru", norm_bias=True, embed_scale=True))
        self.assertEqual(len(s), 3 + 2 * (7 + 6) + 3)


class SafetensorsTests(unittest.TestCase):
    def test_round_trip(self):
        rng = np.random.default_rng(0)
        t = {"b": rng.normal(size=(3, 5)).astype(np.float32), "a": np.array([1.5], np.float32),
             "c.d": rng.normal(size=(2, 2, 2)).astype(np.float32), "s": np.float32(2.0).reshape(())}
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "x.safetensors")
            st.save(p, t, metadata={"format": "pt"})
            with open(p, "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
            self.assertEqual(n % 8, 0)
            back, dtypes, meta = st.load(p)
            self.assertEqual(meta, {"format": "pt"})
            self.assertEqual(set(back), set(t))
            for k in t:
                self.assertEqual(dtypes[k], "F32")
                self.assertEqual(back[k].dtype, np.float32)
                np.testing.assert_array_equal(back[k], t[k])

    def write_raw(self, path, header, data):
        h = json.dumps(header).encode()
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h + data)

    def test_bf16_f16_decode_and_errors(self):
        vals = np.array([1.0, -2.5, 3.140625, 0.0], np.float32)
        bf = (vals.view(np.uint32) >> 16).astype("<u2").tobytes()  # exact in bf16
        f16 = vals.astype("<f2").tobytes()
        hdr = {"__metadata__": {"k": "v"},
               "x": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},
               "y": {"dtype": "F16", "shape": [4], "data_offsets": [8, 16]}}
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "x.safetensors")
            self.write_raw(p, hdr, bf + f16)
            back, dtypes, _ = st.load(p)
            np.testing.assert_array_equal(back["x"], vals.reshape(2, 2))
            np.testing.assert_array_equal(back["y"], vals)
            self.assertEqual(dtypes, {"x": "BF16", "y": "F16"})
            bad = dict(hdr)
            bad["y"] = {"dtype": "F16", "shape": [5], "data_offsets": [8, 16]}
            self.write_raw(p, bad, bf + f16)
            with self.assertRaises(st.SafetensorsError):
                st.load(p)
            self.write_raw(p, hdr, bf + f16 + b"xx")
            with self.assertRaises(st.SafetensorsError):
                st.load(p)


if __name__ == "__main__":
    unittest.main(verbosity=2)
