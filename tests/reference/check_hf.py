"""dyt-train's Hugging Face export, loaded by `transformers` and compared with dyt-grad.

  check_hf.py grad --dyt-grad BIN --config FILE --work DIR [--set field=value]...
  check_hf.py checkpoint --dyt-grad BIN --dyt-train BIN --dyt-export BIN --config FILE --work DIR [--set ...]

grad: dyt-grad's seeded weights, perturbed as check_parity.py does (γ, α, β,
  the embedding scale, a quarter of the embedding rows saturating DyT), are
  run once more by dyt-grad with --logits and --export DIR. The export must
  hold exactly the model's tensors (bit for bit; for RMSNorm with the
  embedding scale, the scale folded: embed_tokens = fp32(s · E) and no
  model.embed_scale), config.json LlamaConfig's fields, and the modelling
  code exactly when the norm is DyT or DyISRU. transformers then loads it —
  RMSNorm as LlamaForCausalLM (and through AutoModelForCausalLM without
  remote code), DyT / DyISRU through AutoModelForCausalLM with
  trust_remote_code — with no missing, unexpected or mismatched tensor, runs
  the same tokens in fp32, and must match dyt-grad: logits
  ||Δ|| <= 1e-5 ||ref||, loss relative 1e-5 (the loss from the HF logits,
  and HF's own `labels` loss against dyt-grad's logits). Controls: the same
  model with the embedding scale, the final norm or the block norms dropped
  must miss dyt-grad's logits by more than 100x that tolerance, so the
  comparison would catch an export or a modelling file that lost one.

checkpoint: a 3-step dyt-train run (random tokens) saves a checkpoint;
  dyt-export turns it into a Hugging Face directory, which must equal the
  run's own end-of-run export file for file, load in transformers and match
  dyt-grad run on the exported weights (an RMSNorm export with the scale
  folded is, exactly, the same model without a scale: dyt-grad runs it with
  model.embed_scale=false). No controls: after 3 steps the blocks' outputs
  are still near their small init (grad mode holds the controls).

Exit status: 0 when everything matches, 1 on a mismatch, 2 when a program
cannot be run.
"""

import argparse
import glob
import json
import math
import os
import shlex
import shutil
import subprocess
import sys


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def fatal(msg):
    print("ERROR: " + msg, flush=True)
    sys.exit(2)


def run(cmd, timeout=600):
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (FileNotFoundError, subprocess.TimeoutExpired) as e:
        fatal(f"cannot run {cmd[0]}: {e}")
    if r.returncode != 0:
        fatal(f"{cmd[0]} exited with status {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r.stdout


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("grad", "checkpoint"))
    ap.add_argument("--dyt-grad", required=True)
    ap.add_argument("--dyt-train")
    ap.add_argument("--dyt-export")
    ap.add_argument("--config", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--data-seed", type=int, default=20240520)
    ap.add_argument("--rtol", type=float, default=1e-5)
    args = ap.parse_args(argv)
    if args.mode == "checkpoint" and not (args.dyt_train and args.dyt_export):
        ap.error("checkpoint needs --dyt-train and --dyt-export")
    return args


args = parse_args(sys.argv[1:])
shutil.rmtree(args.work, ignore_errors=True)
os.makedirs(args.work)
# Before transformers is imported: no network, and the remote code's module
# cache inside the work directory (not ~/.cache, not shared between tests).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HOME"] = os.path.join(args.work, "hf_home")
os.environ["HF_MODULES_CACHE"] = os.path.join(args.work, "hf_modules")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM, LlamaForCausalLM  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io as st  # noqa: E402
from check_parity import perturb, write_shard  # noqa: E402

REMOTE_FILES = ("configuration_dyt_llama.py", "modeling_dyt_llama.py")


def grad_run(out, shard, weights=None, export=None, sets=(), batch=None, seq=None):
    cmd = [args.dyt_grad, "--config", args.config]
    for s in list(args.set) + list(sets):
        cmd += ["--set", s]
    cmd += ["--tokens", shard, "--batch", str(batch or args.batch), "--seq", str(seq or args.seq),
            "--out", out, "--logits"]
    if weights:
        cmd += ["--weights", weights]
    if export:
        cmd += ["--export", export]
    run(cmd)
    with open(os.path.join(out, "loss.json")) as f:
        loss = float(json.load(f)["loss"])
    with open(os.path.join(out, "config.json")) as f:
        cfg = json.load(f)
    logits = st.load(os.path.join(out, "logits.safetensors"))[0]["logits"]
    return cfg, loss, logits


def shard_tokens(path):
    return np.fromfile(path, dtype="<u2", offset=256 * 4).astype(np.int64)


def check_export_dir(hf_dir, model_cfg, weights):
    """The directory's files, config.json and tensors against the model's own (dyt-grad's config.json
    and weights). Returns the folded scale (or None)."""
    errors = []
    kind = model_cfg["norm"]
    with open(os.path.join(hf_dir, "config.json")) as f:
        cfg = json.load(f)
    want = {
        "vocab_size": model_cfg["vocab_size"], "hidden_size": model_cfg["hidden_size"],
        "intermediate_size": model_cfg["intermediate_size"],
        "num_hidden_layers": model_cfg["num_hidden_layers"],
        "num_attention_heads": model_cfg["num_attention_heads"],
        "num_key_value_heads": model_cfg["num_key_value_heads"],
        "head_dim": model_cfg["hidden_size"] // model_cfg["num_attention_heads"],
        "max_position_embeddings": model_cfg["max_position_embeddings"],
        "rope_theta": model_cfg["rope_theta"], "rms_norm_eps": model_cfg["rms_norm_eps"],
        "tie_word_embeddings": False, "torch_dtype": "float32", "hidden_act": "silu",
        "attention_bias": False, "mlp_bias": False, "norm": kind, "norm_bias": model_cfg["norm_bias"],
        "model_type": "llama" if kind == "rmsnorm" else "dyt_llama",
    }
    for k, v in want.items():
        if cfg.get(k, "<absent>") != v:
            errors.append(f"config.json {k} = {cfg.get(k, '<absent>')!r}, expected {v!r}")
    folds = kind == "rmsnorm" and model_cfg["embed_scale"]
    if cfg.get("embed_scale") != (model_cfg["embed_scale"] and not folds):
        errors.append(f"config.json embed_scale = {cfg.get('embed_scale')!r} with folding {folds}")
    if bool(cfg.get("embed_scale_folded", False)) != folds:
        errors.append(f"config.json embed_scale_folded = {cfg.get('embed_scale_folded')!r}, expected {folds}")
    for f in REMOTE_FILES:
        if os.path.exists(os.path.join(hf_dir, f)) != (kind != "rmsnorm"):
            errors.append(f"{f} {'present' if kind == 'rmsnorm' else 'absent'} in an export of norm {kind}")
    if kind != "rmsnorm" and "auto_map" not in cfg:
        errors.append("config.json has no auto_map")
    tensors, _, meta = st.load(os.path.join(hf_dir, "model.safetensors"))
    if (meta or {}).get("format") != "pt":
        errors.append(f"model.safetensors metadata {meta!r} lacks format=pt (transformers refuses it)")
    want_names = set(weights) - ({"model.embed_scale"} if folds else set())
    if set(tensors) != want_names:
        errors.append(f"exported tensors differ: missing {sorted(want_names - set(tensors))}, "
                      f"extra {sorted(set(tensors) - want_names)}")
    scale = None
    for name in sorted(want_names & set(tensors)):
        ref = np.asarray(weights[name], dtype=np.float32)
        if folds and name == "model.embed_tokens.weight":
            scale = np.float32(weights["model.embed_scale"][0])
            ref = (scale * ref).astype(np.float32)  # one fp32 product per element, as the forward
        if tensors[name].shape != ref.shape or not np.array_equal(tensors[name].view(np.uint32),
                                                                  ref.view(np.uint32)):
            errors.append(f"exported {name} differs from the model's" + (" folded" if scale else ""))
    if errors:
        fail("export directory " + hf_dir + ":\n  " + "\n  ".join(errors))
    return scale


def load_hf(hf_dir, kind):
    if kind == "rmsnorm":
        model, info = LlamaForCausalLM.from_pretrained(hf_dir, output_loading_info=True)
        auto = AutoModelForCausalLM.from_pretrained(hf_dir)  # no remote code needed
        if type(auto) is not LlamaForCausalLM:
            fail(f"AutoModelForCausalLM built {type(auto).__name__}, not LlamaForCausalLM")
    else:
        model, info = AutoModelForCausalLM.from_pretrained(hf_dir, trust_remote_code=True,
                                                           output_loading_info=True)
        if type(model).__name__ != "DytLlamaForCausalLM":
            fail(f"AutoModelForCausalLM built {type(model).__name__}, not DytLlamaForCausalLM")
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        if info.get(key):
            fail(f"transformers loading {hf_dir}: {key} {info[key]}")
    return model.float().eval()


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)) /
                 np.linalg.norm(np.asarray(b, np.float64)))


def ce(logits, targets):
    lg = torch.as_tensor(np.asarray(logits, np.float64))
    return float(torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]),
                                                   torch.as_tensor(targets).reshape(-1)))


def hf_logits(model, tokens, **kw):
    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(tokens), **kw)
    return out


def compare(model, tokens, targets, ref_logits, ref_loss, what):
    out = hf_logits(model, tokens, labels=torch.as_tensor(tokens))
    logits = out.logits.numpy()
    e_logits = rel(logits, ref_logits)
    loss = ce(logits, targets)
    e_loss = abs(loss - ref_loss) / abs(ref_loss)
    # transformers' own loss: positions 0..T-2 of each row, targets the next input.
    own_ref = ce(ref_logits[:, :-1], tokens[:, 1:])
    e_own = abs(float(out.loss) - own_ref) / abs(own_ref)
    print(f"{what}: logits ||Δ||/||ref|| {e_logits:.3g}, loss {loss:.9f} vs dyt-grad {ref_loss:.9f} "
          f"(rel {e_loss:.3g}), HF labels loss rel {e_own:.3g}; transformers {transformers.__version__}",
          flush=True)
    problems = [f"{name} relative error {e:.3g} > {args.rtol}"
                for name, e in (("logits", e_logits), ("loss", e_loss), ("HF labels loss", e_own))
                if not e <= args.rtol]
    if problems:
        fail(what + ": " + "; ".join(problems))
    return logits


def controls(model, tokens, ref_logits, kind, scale):
    """Each thing the export carries beyond a plain Llama, dropped from the loaded model, must move
    the logits far beyond the tolerance."""
    import copy
    cases = []
    if scale is not None or getattr(model.model, "embed_scale", None) is not None:
        cases.append("embedding scale")
    cases += ["final norm", "block norms"]
    for case in cases:
        m = copy.deepcopy(model)
        with torch.no_grad():
            if case == "embedding scale":
                if scale is not None:  # RMSNorm: the scale lives in the rows; undo the fold
                    m.model.embed_tokens.weight /= float(scale)
                else:
                    m.model.embed_scale.fill_(1.0)
            elif case == "final norm":
                m.model.norm = torch.nn.Identity()
            else:
                for layer in m.model.layers:
                    layer.input_layernorm = torch.nn.Identity()
                    layer.post_attention_layernorm = torch.nn.Identity()
        e = rel(hf_logits(m, tokens).logits.numpy(), ref_logits)
        print(f"control, {case} dropped: logits ||Δ||/||ref|| {e:.3g}", flush=True)
        if not e > 100 * args.rtol:
            fail(f"dropping the {case} moves the logits by only {e:.3g}: the comparison could not see it")


def grad_mode():
    w = args.work
    n = args.batch * args.seq
    init_dir, shard = os.path.join(w, "init"), os.path.join(w, "tokens.bin")
    # Placeholder tokens for the seeded run, to learn the vocabulary.
    write_shard(shard, np.zeros(n + 1, dtype=np.int64))
    cfg, _, _ = grad_run(init_dir, shard)
    weights = st.load(os.path.join(init_dir, "weights.safetensors"))[0]
    rng = np.random.default_rng(args.data_seed)
    tokens = rng.integers(0, cfg["vocab_size"], size=n + 1)
    write_shard(shard, tokens)
    pert = perturb(weights, rng, saturate=0.25)
    pert_path = os.path.join(w, "perturbed.safetensors")
    st.save(pert_path, pert)
    hf_dir = os.path.join(w, "hf")
    cfg, loss, logits = grad_run(os.path.join(w, "run"), shard, weights=pert_path, export=hf_dir)
    # dyt-grad's own config.json (its tensors unfolded) reads as a config too.
    own = AutoConfig.from_pretrained(os.path.join(w, "run"), trust_remote_code=True)
    for k in ("max_position_embeddings", "num_key_value_heads", "rope_theta", "rms_norm_eps", "head_dim"):
        if getattr(own, k) != cfg[k]:
            fail(f"AutoConfig of dyt-grad's config.json: {k} = {getattr(own, k)!r}, the file says {cfg[k]!r}")
    scale = check_export_dir(hf_dir, cfg, pert)
    model = load_hf(hf_dir, cfg["norm"])
    x = tokens[:n].reshape(args.batch, args.seq)
    y = tokens[1:n + 1].reshape(args.batch, args.seq)
    compare(model, x, y, logits, loss, f"{cfg['norm']} export of dyt-grad's weights")
    controls(model, x, logits, cfg["norm"], scale)


def checkpoint_mode():
    w = args.work
    rng = np.random.default_rng(args.data_seed)
    init_dir, probe = os.path.join(w, "init"), os.path.join(w, "probe.bin")
    n = args.batch * args.seq
    write_shard(probe, np.zeros(n + 1, dtype=np.int64))
    cfg, _, _ = grad_run(init_dir, probe)
    vocab = cfg["vocab_size"]
    data = os.path.join(w, "data")
    os.makedirs(data)
    write_shard(os.path.join(data, "train_000.bin"), rng.integers(0, vocab, size=4096))
    write_shard(os.path.join(data, "val_000.bin"), rng.integers(0, vocab, size=1024))
    run_dir, ck_dir = os.path.join(w, "run"), os.path.join(w, "ck")
    cmd = [args.dyt_train, "--config", args.config]
    for s in args.set + [f"data.train_shards={data}/train_*.bin", f"data.val_shards={data}/val_*.bin",
                         "data.tokenizer=", f"train.run_dir={run_dir}", "train.steps=3",
                         f"train.seq_len={args.seq}", "train.micro_batch=2",
                         f"train.global_batch_tokens={4 * args.seq}", "train.eval_every=0",
                         "train.log_every=1", "train.lr=1e-2", f"checkpoint.dir={ck_dir}"]:
        cmd += ["--set", s]
    run(cmd)
    hf_dir = os.path.join(w, "export")
    run([args.dyt_export, ck_dir, hf_dir])
    # dyt-export of the final checkpoint is the run's own export, file for file.
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(hf_dir, "*")))
    own = sorted(os.path.basename(p) for p in glob.glob(os.path.join(run_dir, "*"))
                 if os.path.basename(p) in names)
    if own != names:
        fail(f"dyt-export wrote {names}, the run's own export has {own}")
    for f in names:
        with open(os.path.join(hf_dir, f), "rb") as a, open(os.path.join(run_dir, f), "rb") as b:
            if a.read() != b.read():
                fail(f"dyt-export's {f} differs from the run's own")
    with open(os.path.join(hf_dir, "config.json")) as f:
        hf_cfg = json.load(f)
    kind = hf_cfg["norm"]
    model = load_hf(hf_dir, kind)
    tokens = rng.integers(0, vocab, size=n + 1)
    shard = os.path.join(w, "tokens.bin")
    write_shard(shard, tokens)
    # A folded export is the same model without a scale.
    sets = ["model.embed_scale=false"] if hf_cfg.get("embed_scale_folded") else []
    _, loss, logits = grad_run(os.path.join(w, "eval"), shard,
                               weights=os.path.join(hf_dir, "model.safetensors"), sets=sets)
    x = tokens[:n].reshape(args.batch, args.seq)
    y = tokens[1:n + 1].reshape(args.batch, args.seq)
    # No controls here: 3 steps leave the blocks' outputs near their small
    # init, so dropping a block norm moves the logits little; grad covers them.
    compare(model, x, y, logits, loss, f"{kind} dyt-export of a 3-step run's checkpoint")


if __name__ == "__main__":
    grad_mode() if args.mode == "grad" else checkpoint_mode()
    print("OK", flush=True)
