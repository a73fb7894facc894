"""Gradient parity of the C++ `dyt-grad` against the PyTorch reference.

  check_parity.py --dyt-grad BIN --config FILE --work DIR [--set field=value]...
                  [--batch 2 --seq 16] [--saturate F] [--min-saturated F]
                  [--weights TRAINED.safetensors]

Steps:
  1. run dyt-grad once (seeded init) on a placeholder shard, to learn the
     model's config.json and get its initial weights;
  2. perturb those weights so every parameter matters (gamma += 0.3 N(0,1),
     alpha *= U(0.5, 1.5), beta = 0.2 N(0,1), embed_scale *= U(0.8, 1.2),
     the embedding rows of a fraction --saturate of the token ids scaled
     30-1000x so their rows saturate DyT, other matrices unchanged) and write
     them as F32 safetensors (or, with --weights, take given weights as they are);
  3. write a random llm.c token shard (fixed numpy seed, ids in [0, vocab));
  4. run dyt-grad again with --weights on the perturbed file;
  5. compute loss and gradients with the float64 reference on the weights of
     run 2 and compare: loss relative difference <= --loss-rtol, and for each
     tensor ||g_cpp - g_ref|| <= --grad-rtol ||g_ref|| + --sum-slack ||S||, where
     S (norm parameters and embed_scale only) sums the magnitudes of the
     per-position summands of the gradient, so that an fp32 reduction whose
     terms cancel is held to what fp32 can do; names and shapes of
     weights and grads must equal the reference's; the weights run 2 wrote must
     equal the perturbed input bit for bit; config.json must reflect --set.

Exit status: 0 on parity, 1 on a parity or contract failure, 2 when dyt-grad
cannot be run or its outputs cannot be read.
"""

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import llama_dyt as R  # noqa: E402
import safetensors_io as st  # noqa: E402

SHARD_MAGIC = 20240520
SHARD_VERSION = 1

# --set field paths of configs/dyt.proto -> (config.json key, parser)
_OVERRIDE_KEYS = {
    "model.vocab_size": ("vocab_size", int),
    "model.d_model": ("hidden_size", int),
    "model.n_layers": ("num_hidden_layers", int),
    "model.n_heads": ("num_attention_heads", int),
    "model.n_kv_heads": ("num_key_value_heads", int),
    "model.ffn_hidden": ("intermediate_size", int),
    "model.rope_theta": ("rope_theta", float),
    "model.norm_eps": ("rms_norm_eps", float),
    "model.norm": ("norm", lambda s: s.strip().lower()),
    "model.norm_bias": ("norm_bias", lambda s: s.strip().lower() in ("true", "1")),
    "model.embed_scale": ("embed_scale", lambda s: s.strip().lower() in ("true", "1")),
}


class Fatal(Exception):
    """dyt-grad could not be run or produced unreadable output (exit 2)."""


def write_shard(path, tokens):
    tokens = np.asarray(tokens)
    if tokens.min() < 0 or tokens.max() > 0xFFFF:
        raise ValueError("uint16 shard tokens must lie in [0, 65535]")
    header = np.zeros(256, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, len(tokens)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2").tobytes())


def run_dyt_grad(args, out_dir, shard, weights=None):
    os.makedirs(out_dir, exist_ok=True)
    cmd = [args.dyt_grad, "--config", args.config]
    for s in args.set:
        cmd += ["--set", s]
    cmd += ["--tokens", shard, "--batch", str(args.batch), "--seq", str(args.seq), "--out", out_dir]
    if weights is not None:
        cmd += ["--weights", weights]
    if args.init_seed is not None:
        cmd += ["--seed", str(args.init_seed)]
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except FileNotFoundError:
        raise Fatal(f"dyt-grad binary not found: {args.dyt_grad}") from None
    except subprocess.TimeoutExpired:
        raise Fatal(f"dyt-grad did not finish within {args.timeout} s") from None
    if r.returncode != 0:
        raise Fatal(f"dyt-grad exited with status {r.returncode}\n--- stdout ---\n{r.stdout}"
                    f"--- stderr ---\n{r.stderr}")
    for name in ("weights.safetensors", "grads.safetensors", "loss.json", "config.json"):
        if not os.path.isfile(os.path.join(out_dir, name)):
            raise Fatal(f"dyt-grad succeeded but wrote no {os.path.join(out_dir, name)}")


def load_run(out_dir):
    try:
        with open(os.path.join(out_dir, "config.json")) as f:
            cfg_dict = json.load(f)
        with open(os.path.join(out_dir, "loss.json")) as f:
            loss = float(json.load(f)["loss"])
        weights, wdt, _ = st.load(os.path.join(out_dir, "weights.safetensors"))
        grads, gdt, _ = st.load(os.path.join(out_dir, "grads.safetensors"))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Fatal(f"cannot read the outputs in {out_dir}: {e}") from None
    return cfg_dict, loss, weights, wdt, grads, gdt


def perturb(weights, rng, saturate=0.0):
    """gamma += 0.3 N(0,1), alpha *= U(0.5,1.5), beta = 0.2 N(0,1),
    embed_scale *= U(0.8,1.2); a fraction `saturate` of the embedding rows
    (token ids) scaled by a log-uniform factor in [30, 1000], so that the rows
    of those tokens carry a residual stream that saturates DyT (|alpha x| from
    a few to a few hundred, as in trained models); other matrices unchanged.
    Returns float32 arrays."""
    out = {}
    for name in sorted(weights):
        w = np.asarray(weights[name], dtype=np.float64)
        if name == "model.embed_tokens.weight" and saturate > 0:
            rows = rng.random(w.shape[0]) < saturate
            factor = np.exp(rng.uniform(np.log(30.0), np.log(1000.0), size=w.shape[0]))
            w = w * np.where(rows, factor, 1.0)[:, None]
        elif name == "model.embed_scale":
            w = w * rng.uniform(0.8, 1.2, size=w.shape)
        elif name.endswith(".alpha"):
            w = w * rng.uniform(0.5, 1.5, size=w.shape)
        elif name.endswith(".bias"):
            w = 0.2 * rng.normal(size=w.shape)
        elif w.ndim == 1 and name.endswith(".weight"):
            w = w + 0.3 * rng.normal(size=w.shape)
        out[name] = w.astype(np.float32)
    return out


def check_config_overrides(cfg_dict, overrides):
    """config.json must show the value of each known --set (the last one wins)."""
    last = {}
    for s in overrides:
        path, sep, value = s.partition("=")
        if sep and path.strip() in _OVERRIDE_KEYS:
            last[path.strip()] = value
    errors = []
    for path, value in last.items():
        key, parse = _OVERRIDE_KEYS[path]
        want = parse(value)
        got = cfg_dict.get(key)
        if isinstance(got, str):
            got = got.lower()
        if isinstance(want, float):
            same = isinstance(got, (int, float)) and math.isclose(float(got), want, rel_tol=1e-12)
        else:
            same = got == want
        if not same:
            errors.append(f"config.json {key} = {got!r}, but --set {path}={value} asks for {want!r}")
    return errors


def check_expectations(cfg_dict, expects):
    errors = []
    for e in expects:
        key, _, value = e.partition("=")
        try:
            want = json.loads(value)
        except json.JSONDecodeError:
            want = value
        got = cfg_dict.get(key, "<absent>")
        if isinstance(got, str) and isinstance(want, str):
            got, want = got.lower(), want.lower()
        if got != want:
            errors.append(f"config.json {key} = {got!r}, expected {want!r} (--expect {e})")
    return errors


def check_names(what, tensors, shapes):
    errors = []
    missing = sorted(set(shapes) - set(tensors))
    extra = sorted(set(tensors) - set(shapes))
    if missing:
        errors.append(f"{what}: missing tensors {missing}")
    if extra:
        errors.append(f"{what}: unexpected tensors {extra}")
    for n in sorted(set(shapes) & set(tensors)):
        if tuple(tensors[n].shape) != tuple(shapes[n]):
            errors.append(f"{what}: {n} has shape {list(tensors[n].shape)}, expected {list(shapes[n])}")
    return errors


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dyt-grad", required=True, help="path of the dyt-grad binary")
    ap.add_argument("--config", required=True, help="text-format run config (configs/*.pbtxt)")
    ap.add_argument("--work", required=True, help="scratch directory (created; old contents overwritten)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="config override passed to dyt-grad (repeatable)")
    ap.add_argument("--expect", action="append", default=[], metavar="KEY=VALUE",
                    help="config.json KEY must equal VALUE (JSON), e.g. embed_scale=false (repeatable)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--data-seed", type=int, default=20240520, help="numpy seed of tokens and perturbation")
    ap.add_argument("--init-seed", type=int, default=None, help="--seed passed to dyt-grad (default: its own)")
    ap.add_argument("--loss-rtol", type=float, default=1e-5)
    ap.add_argument("--grad-rtol", type=float, default=1e-4)
    ap.add_argument("--sum-slack", type=float, default=1e-6,
                    help="extra allowance, times ||S||, for gradients reduced over positions "
                         "(norm parameters, embed_scale); S = sum of |summands|. 0 = strict")
    ap.add_argument("--weights", default=None, metavar="SAFETENSORS",
                    help="compare at these weights (e.g. a trained model.safetensors) instead of "
                         "perturbing the initial ones")
    ap.add_argument("--saturate", type=float, default=0.25,
                    help="fraction of token ids whose embedding rows are scaled 30-1000x, so that "
                         "their rows saturate DyT")
    ap.add_argument("--min-saturated", type=float, default=0.0,
                    help="fail unless at least this fraction of every DyT/DyISRU layer's inputs has "
                         "|alpha x| > 9 (proves a saturated case is saturated)")
    ap.add_argument("--saturation-threshold", type=float, default=9.0,
                    help="|alpha x| beyond which --min-saturated counts an input (9: tanh is 1 "
                         "in float32; 3: the trainer's health signal, tanh' < 0.01)")
    ap.add_argument("--saturation-layers", default="", metavar="REGEX",
                    help="apply --min-saturated only to the norms whose prefix matches REGEX")
    ap.add_argument("--fp32-peer", action="store_true",
                    help="also run the reference in float32; a tensor beyond --grad-rtol passes if it is "
                         "within twice the float32 reference's own error (for weights whose gradients "
                         "cancel, e.g. attention on saturated trained inputs, where no fp32 code does better)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per dyt-grad run")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.seq < 1:
        ap.error("--batch and --seq must be positive")

    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    B, T = args.batch, args.seq
    n_tokens = B * T + 1 + T  # T extra tokens: dyt-grad must read only the first B*T+1
    rng = np.random.default_rng(args.data_seed)

    # 1. initial weights (token ids 0 are valid for every vocabulary)
    init_shard = os.path.join(work, "init_tokens.bin")
    write_shard(init_shard, np.zeros(n_tokens, dtype=np.int64))
    run1 = os.path.join(work, "run1_init")
    run_dyt_grad(args, run1, init_shard)
    cfg1_dict, _, w1, _, _, _ = load_run(run1)
    try:
        cfg = R.Config.from_dict(cfg1_dict)
    except ValueError as e:
        raise Fatal(f"{run1}/config.json: {e}") from None
    print(f"model: {json.dumps(cfg1_dict, sort_keys=True)}")

    failures = []
    failures += check_config_overrides(cfg1_dict, args.set)
    failures += check_expectations(cfg1_dict, args.expect)
    shapes = R.param_shapes(cfg)
    failures += check_names("run 1 weights.safetensors", w1, shapes)
    if failures:  # no sense perturbing weights of the wrong model
        return report(failures)

    # 2. perturbed weights
    if args.weights:
        try:
            given, _, _ = st.load(args.weights)
        except (OSError, ValueError) as e:
            raise Fatal(f"cannot read --weights {args.weights}: {e}") from None
        failures += check_names(f"--weights {args.weights}", given, shapes)
        if failures:
            return report(failures)
        perturbed = {n: np.asarray(v, dtype=np.float32) for n, v in given.items()}
    else:
        perturbed = perturb(w1, rng, args.saturate)
    pert_path = os.path.join(work, "perturbed.safetensors")
    st.save(pert_path, perturbed, metadata={"format": "pt", "source": "check_parity.py perturbation"})

    # 3. random tokens; make sure the first and last ids of the vocabulary occur
    if cfg.vocab_size > 65536:
        raise Fatal(f"vocab_size {cfg.vocab_size} does not fit a uint16 shard")
    tokens = rng.integers(0, cfg.vocab_size, size=n_tokens)
    tokens[1], tokens[B * T // 2] = 0, cfg.vocab_size - 1
    shard = os.path.join(work, "tokens.bin")
    write_shard(shard, tokens)
    x = tokens[:B * T].reshape(B, T)
    y = tokens[1:B * T + 1].reshape(B, T)

    # 4. gradients at the perturbed weights
    run2 = os.path.join(work, "run2_perturbed")
    run_dyt_grad(args, run2, shard, weights=pert_path)
    cfg2_dict, loss_cpp, w2, wdt, g2, gdt = load_run(run2)
    if cfg2_dict != cfg1_dict:
        failures.append(f"config.json differs between runs: {cfg1_dict} vs {cfg2_dict}")
    failures += check_names("weights.safetensors", w2, shapes)
    failures += check_names("grads.safetensors", g2, shapes)
    for what, dts in (("weights", wdt), ("grads", gdt)):
        bad = sorted(n for n, d in dts.items() if d != "F32")
        if bad:
            failures.append(f"{what}.safetensors: tensors not F32: {[(n, dts[n]) for n in bad]}")
    not_loaded = [n for n in sorted(set(perturbed) & set(w2))
                  if w2[n].shape != perturbed[n].shape
                  or not np.array_equal(w2[n].astype(np.float32).view(np.uint32), perturbed[n].view(np.uint32))]
    if not_loaded:
        failures.append(f"--weights not honoured: written weights differ from the perturbed input in {not_loaded}")
    if failures:
        return report(failures)

    # 5. reference
    loss_ref, g_ref, S = R.loss_and_grads(cfg, w2, x, y, summands=True)
    peer = {}
    if args.fp32_peer:
        with R.precision(R.torch.float32):
            _, g32 = R.loss_and_grads(cfg, w2, x, y)
        peer = {n: float(np.linalg.norm(g32[n].astype(np.float64) - g_ref[n])) for n in g_ref}
    sat = R.dyt_saturation(cfg, w2, x, args.saturation_threshold)
    if sat:
        print(f"\n{cfg.norm} inputs with |alpha x| > {args.saturation_threshold:g}: " + ", ".join(f"{n} {f:.0%}" for n, f in sat.items()))
        low = {n: f for n, f in sat.items()
               if f < args.min_saturated and re.match(args.saturation_layers, n)}
        if low:
            failures.append(f"--min-saturated {args.min_saturated:g}: these layers saturate less: {low}")
    elif args.min_saturated > 0:
        failures.append("--min-saturated given for a model without DyT or DyISRU")
    loss_rel = abs(loss_cpp - loss_ref) / max(abs(loss_ref), 1e-30)
    print(f"\nloss: dyt-grad {loss_cpp:.9g}  reference {loss_ref:.9g}  rel diff {loss_rel:.3e}"
          f"  (tol {args.loss_rtol:g})")
    if not (math.isfinite(loss_cpp) and loss_rel <= args.loss_rtol):
        failures.append(f"loss: dyt-grad {loss_cpp!r} vs reference {loss_ref!r}, rel diff {loss_rel:.3e} "
                        f"> {args.loss_rtol:g}")

    # Gradients: ||g_cpp - g_ref|| <= rtol ||g_ref|| + slack ||S||. The second
    # term matters only for a reduction whose summands cancel (kappa =
    # ||S|| / ||g_ref|| large), where fp32 cannot reach rtol: e.g. an alpha
    # gradient of 4e-9 summed from terms totalling 4e-5 (kappa 1e4).
    width = max(len(n) for n in shapes)
    print(f"\n{'tensor':<{width}}  {'shape':>10}  {'|g_ref|':>9}  {'kappa':>7}  {'rel err':>9}  {'max abs':>9}")
    worst = (0.0, "")
    slack_used, peer_used = [], []
    for n in shapes:  # model order
        gc = g2[n].astype(np.float64)
        gr = g_ref[n]
        ref_norm = float(np.linalg.norm(gr))
        diff_norm = float(np.linalg.norm(gc - gr))
        s_norm = float(np.linalg.norm(S[n])) if n in S else 0.0
        finite = bool(np.isfinite(gc).all())
        err = diff_norm / ref_norm if ref_norm > 0 else (0.0 if diff_norm == 0 else math.inf)
        strict_ok = finite and diff_norm <= args.grad_rtol * ref_norm
        ok = finite and diff_norm <= args.grad_rtol * ref_norm + args.sum_slack * s_norm
        peer_ok = not ok and finite and n in peer and diff_norm <= 2.0 * peer[n]
        kappa = f"{s_norm / ref_norm:7.1e}" if n in S and ref_norm > 0 else f"{'-':>7}"
        maxabs = float(np.abs(gc - gr).max()) if gc.size else 0.0
        worst = max(worst, (err if finite else math.inf, n))
        mark = "" if strict_ok else ("  ok: within fp32 summation slack" if ok else
                                     f"  ok: within 2x PyTorch float32's error ({peer[n] / ref_norm:.3e})"
                                     if peer_ok else "  <-- FAIL")
        if peer_ok:
            peer_used.append(n)
            ok = True
        print(f"{n:<{width}}  {str(list(gr.shape)):>10}  {ref_norm:9.3e}  {kappa}  {err:9.3e}  {maxabs:9.3e}{mark}")
        if ok and not strict_ok:
            slack_used.append(n)
        if not ok:
            failures.append(f"grad {n}: ||g_cpp - g_ref|| / ||g_ref|| = {err:.3e} > {args.grad_rtol:g}"
                            + (f" (and > {args.sum_slack:g} ||S||, kappa {s_norm / ref_norm:.1e})"
                               if n in S and ref_norm > 0 else "")
                            + ("" if finite else " (non-finite values)"))
    if slack_used:
        print(f"\nnote: {len(slack_used)} tensor(s) exceed rtol {args.grad_rtol:g} but lie within "
              f"{args.sum_slack:g}*||S|| (ill-conditioned sums in fp32): {slack_used}")
    if peer_used:
        print(f"\nnote: {len(peer_used)} tensor(s) pass only as within twice the error of the same "
              f"reference run in float32: {peer_used}")
    print(f"\nworst tensor: {worst[1]} ({worst[0]:.3e})")
    return report(failures)


def report(failures):
    if failures:
        print(f"\nPARITY FAILED ({len(failures)} problem{'s' if len(failures) > 1 else ''}):", file=sys.stderr)
        for f in failures:
            print("  - " + f, file=sys.stderr)
        return 1
    print("\nPARITY OK")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Fatal as e:
        print(f"check_parity: {e}", file=sys.stderr)
        sys.exit(2)
