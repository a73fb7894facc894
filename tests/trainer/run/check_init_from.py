"""checkpoint.init_from: a fresh run whose weights come from another run's
export or checkpoint, on a shrunk tiny model and random tokens.

  check_init_from.py --train dyt-train --grad dyt-grad --config tiny.pbtxt --work DIR [--mpirun MPIRUN]

The training shard holds exactly one global batch (4 samples), so a step's
loss is the mean over all of it, which dyt-grad computes on the same tokens.
Run A (DyT, 3 steps) leaves its Hugging Face export and a checkpoint.
- Seeded from A's export with lr 1e-30 (below half an ulp of every weight, none of which is 0) for one step: the validation loss at
  step 0 and the step-1 loss equal dyt-grad evaluating A's exported weights
  (1e-6 relative; the sums run in another order), and the run's own export
  equals A's bit for bit (the step leaves the seed as it was).
- Seeded from A's checkpoint root (lr as A): step 1 has A's step-1 lr (a
  fresh schedule) and the same loss as the run seeded from the export, bit
  for bit; also under mpirun with tp 2 (each rank reads its blocks of the
  export), to 1e-6.
- RMSNorm with the embedding scale: A's export folds the scale into the
  embedding; a run seeded from it takes scale 1 and exports A's bytes again.
- A checkpoint.dir that holds a checkpoint wins: the run resumes, and a bad
  init_from is not even opened.
- Errors (exit 1, the message naming the tensor or setting): no such
  directory, a directory with no model, an export without config.json,
  another shape, a missing tensor (norm_bias), another norm kind, other heads.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np

SMALL = ["model.vocab_size=96", "model.d_model=48", "model.n_layers=2", "model.n_heads=4",
         "model.n_kv_heads=2", "model.ffn_hidden=80"]
SEQ, SAMPLES = 16, 4


def fail(msg):
    sys.exit("FAIL: " + msg)


def write_shard(path, tokens):
    header = np.zeros(256, dtype="<i4")
    header[0], header[1], header[2] = 20240520, 1, len(tokens)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens).astype("<u2").tobytes())


def read(path):
    with open(path, "rb") as f:
        return f.read()


class Runner:
    def __init__(self, args):
        self.a = args
        self.data = os.path.join(args.work, "data")
        os.makedirs(self.data)
        rng = np.random.default_rng(7)
        write_shard(os.path.join(self.data, "train_000.bin"), rng.integers(0, 96, SAMPLES * SEQ + 1))
        write_shard(os.path.join(self.data, "val_000.bin"), rng.integers(0, 96, SAMPLES * SEQ + 1))

    def train(self, name, *sets, expect_rc=0, ranks=1):
        run_dir = os.path.join(self.a.work, name)
        cmd = [self.a.train, "--config", self.a.config]
        if ranks > 1:
            cmd = [self.a.mpirun, "--oversubscribe", "-np", str(ranks)] + cmd
        for s in SMALL + [f"data.train_shards={self.data}/train_*.bin", f"data.val_shards={self.data}/val_*.bin",
                          f"train.run_dir={run_dir}", f"train.seq_len={SEQ}", "train.micro_batch=2",
                          f"train.global_batch_tokens={SAMPLES * SEQ}", "train.eval_every=100",
                          "train.eval_batches=2", "train.log_every=1", "train.lr=1e-2", "train.warmup_steps=0",
                          "train.steps=3"] + list(sets):
            cmd += ["--set", s]
        print("+", " ".join(cmd), flush=True)
        # Open MPI refuses root (CI runs as root) unless told it is meant.
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        if ranks > 1 and "ASAN_OPTIONS" in env:
            # Under the sanitizers, ranks keep every check but the leak check:
            # Open MPI leaves allocations at exit (as tests/parallel does).
            env["ASAN_OPTIONS"] += ":detect_leaks=0"
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        print(p.stdout[-1500:], p.stderr[-1500:], sep="\n", flush=True)
        if p.returncode != expect_rc:
            fail(f"{name}: dyt-train exited {p.returncode}, expected {expect_rc}")
        return run_dir, p.stdout + p.stderr

    def metrics(self, run_dir):
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            lines = [json.loads(line) for line in f]
        steps = {m["step"]: m for m in lines if "loss" in m}
        val = {m["step"]: m["val_loss"] for m in lines if "val_loss" in m}
        return steps, val

    def evaluate(self, weights, shard, *sets):
        out = os.path.join(self.a.work, "eval_" + os.path.basename(os.path.dirname(weights)) + "_" +
                           os.path.basename(shard))
        cmd = [self.a.grad, "--config", self.a.config]
        for s in SMALL + list(sets):
            cmd += ["--set", s]
        cmd += ["--tokens", os.path.join(self.data, shard), "--batch", str(SAMPLES), "--seq", str(SEQ),
                "--out", out, "--weights", weights]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            fail(f"dyt-grad exited {p.returncode}: {p.stderr}")
        with open(os.path.join(out, "loss.json")) as f:
            return json.load(f)["loss"]


def close(a, b, what, rtol=1e-6):
    print(f"{what}: {a:.9f} vs {b:.9f}", flush=True)
    if not abs(a - b) <= rtol * abs(b):
        fail(f"{what}: {a!r} vs {b!r} (relative tolerance {rtol})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--grad", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--mpirun", default="")
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    r = Runner(args)

    # Run A: DyT with the embedding scale (its default), 3 steps, a checkpoint.
    ck_a = os.path.join(args.work, "ck_a")
    run_a, _ = r.train("a", "model.norm=DYT", f"checkpoint.dir={ck_a}")
    steps_a, _ = r.metrics(run_a)
    export_a = os.path.join(run_a, "model.safetensors")
    train_eval = r.evaluate(export_a, "train_000.bin")
    val_eval = r.evaluate(export_a, "val_000.bin")

    # Seeded from the export, lr 1e-30: the seed unchanged, its losses those of A's weights.
    run_b, out = r.train("b", "model.norm=DYT", f"checkpoint.init_from={run_a}", "train.lr=1e-30", "train.steps=1")
    if "checkpoint.init_from" not in out or "fresh optimizer" not in out:
        fail("the seeded run does not say where its weights came from")
    steps_b, val_b = r.metrics(run_b)
    if sorted(steps_b) != [1] or sorted(val_b) != [0, 1]:
        fail(f"the seeded run logged steps {sorted(steps_b)} and evaluations {sorted(val_b)}: it must start at step 0")
    close(val_b[0], val_eval, "seeded run's step-0 validation loss vs dyt-grad on A's export")
    close(steps_b[1]["loss"], train_eval, "seeded run's step-1 loss vs dyt-grad on A's export")
    if read(os.path.join(run_b, "model.safetensors")) != read(export_a):
        fail("a run seeded from A's export with lr 1e-30 does not export A's weights bit for bit")

    # Seeded from A's checkpoint root: a fresh schedule, the same first loss.
    run_c, _ = r.train("c", "model.norm=DYT", f"checkpoint.init_from={ck_a}", "train.steps=1")
    steps_c, _ = r.metrics(run_c)
    if steps_c[1]["lr"] != steps_a[1]["lr"]:
        fail(f"seeded run's step-1 lr {steps_c[1]['lr']} is not a fresh schedule's {steps_a[1]['lr']}")
    if steps_c[1]["loss"] != steps_b[1]["loss"]:
        fail(f"seeded from the checkpoint, step-1 loss {steps_c[1]['loss']!r}; from the export "
             f"{steps_b[1]['loss']!r}: the same weights must give the same bits")
    if args.mpirun:
        run_t, _ = r.train("tp2", "model.norm=DYT", f"checkpoint.init_from={run_a}", "train.steps=1",
                           "parallel.tp=2", ranks=2)
        close(r.metrics(run_t)[0][1]["loss"], steps_c[1]["loss"], "tp 2 seeded from the export vs tp 1")

    # RMSNorm with the embedding scale: the export folds it; a seeded run takes scale 1.
    run_f, _ = r.train("fold_a", "model.norm=RMSNORM", "model.embed_scale=true")
    run_g, out = r.train("fold_b", "model.norm=RMSNORM", "model.embed_scale=true",
                         f"checkpoint.init_from={run_f}", "train.lr=1e-30", "train.steps=1")
    if "model.embed_scale = 1" not in out:
        fail("a run seeded from a folded export does not say that it set the scale to 1")
    if read(os.path.join(run_g, "model.safetensors")) != read(os.path.join(run_f, "model.safetensors")):
        fail("a run seeded from a folded RMSNorm export does not export the same weights again")
    close(r.metrics(run_g)[0][1]["loss"],
          r.evaluate(os.path.join(run_f, "model.safetensors"), "train_000.bin", "model.norm=RMSNORM",
                     "model.embed_scale=false"),
          "seeded from a folded export: step-1 loss vs dyt-grad")

    # checkpoint.dir with a checkpoint: resume; init_from is not opened.
    shutil.copytree(ck_a, os.path.join(args.work, "ck_resume"))
    _, out = r.train("resume", "model.norm=DYT", f"checkpoint.dir={args.work}/ck_resume",
                     f"checkpoint.init_from={args.work}/no_such_dir")
    if "resuming from" not in out:
        fail("a run with a checkpoint in checkpoint.dir and init_from did not resume")

    # Errors: exit 1, one line naming what is wrong.
    empty = os.path.join(args.work, "empty")
    os.makedirs(empty)
    no_config = os.path.join(args.work, "no_config")
    os.makedirs(no_config)
    shutil.copy(os.path.join(run_a, "model.safetensors"), no_config)
    cases = [
        ("missing", [f"checkpoint.init_from={args.work}/no_such_dir"], "is not a directory"),
        ("empty", [f"checkpoint.init_from={empty}"], "holds no checkpoint"),
        ("no_config", [f"checkpoint.init_from={no_config}"], "no config.json"),
        ("shape", [f"checkpoint.init_from={run_a}", "model.ffn_hidden=96"],
         "tensor model.layers.0.mlp.gate_proj.weight has shape [80, 48], this run's model has [96, 48]"),
        ("bias", [f"checkpoint.init_from={ck_a}", "model.norm_bias=true"],
         "has no tensor model.layers.0.input_layernorm.bias"),
        ("norm", [f"checkpoint.init_from={run_a}", "model.norm=DYISRU"], "norm dyt, this run's model has dyisru"),
        ("heads", [f"checkpoint.init_from={ck_a}", "model.n_heads=8", "model.n_kv_heads=4"],
         "attention heads (n_heads) 4, this run's model has 8"),
    ]
    for name, sets, want in cases:
        sets = ["model.norm=DYT"] + sets
        _, out = r.train("bad_" + name, *sets, expect_rc=1)
        if want not in out or "checkpoint error" not in out:
            fail(f"{name}: expected an error with {want!r}, got:\n{out}")
        print(f"error case {name}: ok", flush=True)
    print("OK")


if __name__ == "__main__":
    main()
