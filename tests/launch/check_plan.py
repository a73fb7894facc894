#!/usr/bin/env python3
"""dyt-plan's parameter counts against the published LLaMA totals.

With RMSNorm the count must equal Meta's published figure exactly; with DyT
it may differ only by one α per norm layer (2 per block + the final one) and
the embedding scale, plus β (d per norm layer) when norm_bias is on.

Then the per-rank state and communication figures against formulas
written out here: ZeRO-1's bytes per parameter (6 + 12/dp under BF16, plus
the sharded master's side buffer of norm parameters; 8 + 8/dp under FP32;
Megatron's distributed optimizer), sequence parallelism dividing
the norm-region activations by tp, and the dp group's volume by the
communicator's convention (docs/parallel.md).

  check_plan.py DYT_PLAN CONFIG_DIR
"""
import json
import subprocess
import sys

PUBLISHED = {  # config: (parameters with RMSNorm, layers, width)
    "llama7b": (6_738_415_616, 32, 4096),
    "llama13b": (13_015_864_320, 40, 5120),
    "llama34b": (33_743_970_304, 48, 8192),
    "llama70b": (68_976_648_192, 80, 8192),
}


def plan(binary, config, *overrides):
    cmd = [binary, "--config", config, "--json"]
    for o in overrides:
        cmd += ["--set", o]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main():
    binary, config_dir = sys.argv[1], sys.argv[2]
    failures = []
    for name, (published, layers, width) in PUBLISHED.items():
        cfg = f"{config_dir}/{name}.pbtxt"
        rms = plan(binary, cfg, "model.norm=RMSNORM")["parameters"]
        dyt = plan(binary, cfg)["parameters"]
        dyt_bias = plan(binary, cfg, "model.norm_bias=true")["parameters"]
        norms = 2 * layers + 1
        print(f"{name}: rmsnorm {rms:,} (published {published:,}), dyt {dyt:,}, dyt+bias {dyt_bias:,}")
        if rms != published:
            failures.append(f"{name}: RMSNorm count {rms} != published {published}")
        if dyt != published + norms + 1:
            failures.append(f"{name}: DyT count {dyt} != {published} + {norms} alphas + 1 embed scale")
        if dyt_bias != dyt + norms * width:
            failures.append(f"{name}: DyT+bias count {dyt_bias} != {dyt} + {norms}x{width} betas")
    failures += check_zero1(binary, config_dir)
    failures += check_sequence_parallel(binary, config_dir)
    failures += check_comm(binary, config_dir)
    failures += check_cli(binary, config_dir)
    for f in failures:
        print("FAIL:", f)
    sys.exit(1 if failures else 0)


def llama7b_side(p):
    """The side buffer of the sharded master (trainer/param_store.h) for
    llama7b at tp 1 with DyT: per norm layer (2 per block + the final one) γ
    (d) and α (1), each at a multiple of 64 elements, and the embedding scale
    when the model has one (what the DyT count has beyond the α's)."""
    rms, layers, d = PUBLISHED["llama7b"]
    norms = 2 * layers + 1
    scale = p["parameters"] - rms - norms
    assert scale in (0, 1), scale
    align = lambda k: -(-k // 64) * 64
    return norms * (align(d) + align(1)) + scale * align(1)


def check_zero1(binary, config_dir):
    """State bytes = fixed·n + sharded·ceil(n/dp) (+ 4·side under BF16 at dp > 1),
    n the rank's buffer."""
    failures = []
    cfg = f"{config_dir}/llama7b.pbtxt"
    for prec, fixed, sharded in (("BF16", 6, 12), ("FP32", 8, 8)):
        for dp in (1, 8, 64):
            p = plan(binary, cfg, "train.device=CUDA", f"train.precision={prec}", "parallel.tp=1",
                     f"parallel.dp={dp}", "parallel.zero1=true")
            n = p["buffer_elements"]
            state = p["weight_bytes"] + p["master_weight_bytes"] + p["gradient_bytes"] + p["optimizer_bytes"]
            side = llama7b_side(p) if prec == "BF16" and dp > 1 else 0
            want = fixed * n + sharded * -(-n // dp) + 4 * side
            print(f"zero1 {prec} dp {dp}: {state / n:.4f} bytes/parameter (formula {fixed} + {sharded}/{dp})")
            if state != want:
                failures.append(f"ZeRO-1 {prec} dp {dp}: state {state} != {want}")
    return failures


def check_sequence_parallel(binary, config_dir):
    """SP takes (1 - 1/tp) of the norm-region tensors off one rank's arena and adds
    three full-row [N, d] buffers (gathered input, partial output, gathered gradient)."""
    failures = []
    cfg = f"{config_dir}/llama70b.pbtxt"
    B, T, d, L, tp = 1, 4096, 8192, 80, 8
    common = ["train.device=CUDA", "train.precision=BF16", f"parallel.tp={tp}",
              f"train.micro_batch={B}", f"train.seq_len={T}", "model.norm=DYT", "model.embed_scale=false"]
    on = plan(binary, cfg, *common, "parallel.sequence_parallel=true")
    off = plan(binary, cfg, *common, "parallel.sequence_parallel=false")
    nd = B * T * d
    for key, sets in (("activation_bytes", L), ("activation_recompute_bytes", 1)):
        # layer inputs (L + 1), a1/x_mid/a2 per kept set, final_a, dresid, dnorm; bf16.
        region = ((L + 1) + 3 * sets + 3) * nd * 2
        want = off[key] - (region - region // tp) + 3 * nd * 2
        print(f"sp {key}: {off[key]:,} -> {on[key]:,} (norm region {region:,} / {tp})")
        if on[key] != want:
            failures.append(f"sequence parallel {key}: {on[key]} != {want}")
    if on["sp_gather_bytes"] != 3 * nd * 2 or off["sp_gather_bytes"] != 0:
        failures.append(f"sequence parallel gather buffers {on['sp_gather_bytes']} != {3 * nd * 2}")
    return failures


def comm_total(p, group):
    return p["comm_total"][group]["bytes_sent"]


def check_comm(binary, config_dir):
    failures = []
    cfg = f"{config_dir}/llama7b.pbtxt"
    base = ["train.device=CUDA", "train.precision=BF16", "parallel.tp=1", "parallel.dp=8"]
    plain = plan(binary, cfg, *base, "parallel.zero1=false")
    n = plain["buffer_elements"]
    # all-reduce of n fp32 over 8 (8 divides n): 2·7/8·n·4; the f64 loss: rank 0 owns no element, sends 8.
    want = 2 * 7 * n * 4 // 8 + 8
    print(f"dp 8 plain: {comm_total(plain, 'dp'):,} bytes (want {want:,})")
    if comm_total(plain, "dp") != want:
        failures.append(f"plain dp volume {comm_total(plain, 'dp')} != {want}")
    z = plan(binary, cfg, *base, "parallel.zero1=true")
    c = -(-n // 8)
    # reduce-scatter fp32, all-gather bf16 weights and the fp32 side buffer, norm, loss
    want = 7 * c * 4 + 7 * c * 2 + 7 * llama7b_side(z) * 4 + 8 + 8
    print(f"dp 8 ZeRO-1: {comm_total(z, 'dp'):,} bytes (want {want:,})")
    if comm_total(z, "dp") != want:
        failures.append(f"ZeRO-1 dp volume {comm_total(z, 'dp')} != {want}")
    if comm_total(plain, "tp") != 0:
        failures.append("tp 1 has tp traffic")
    # tp 2 without SP: (4 per block + embedding + LM head) all-reduces of N·d bf16,
    # plus the cross-entropy's all-gather of 3 f64 per row, per micro-batch.
    t = plan(binary, cfg, "train.device=CUDA", "train.precision=BF16", "parallel.tp=2",
             "parallel.dp=8", "parallel.sequence_parallel=false", "train.recompute=false",
             "train.micro_batch=1", "train.seq_len=4096", "train.global_batch_tokens=1048576")
    micro = 1048576 // (4096 * 8)
    N, d, L = 4096, 4096, 32
    # All-reduce at p = 2 moves 2·(p−1)/p = 1 times its bytes; the all-gather (p−1) = 1 times a rank's.
    # Once per step: the all-reduce of the owned blocks' squared gradient norm (one f64).
    want = micro * ((4 * L + 2) * (N * d * 2) + 3 * N * 8) + 8
    print(f"tp 2: {comm_total(t, 'tp'):,} bytes per step (want {want:,})")
    if comm_total(t, "tp") != want:
        failures.append(f"tp 2 volume {comm_total(t, 'tp')} != {want}")
    return failures


def run(binary, *args):
    return subprocess.run([binary, *args], capture_output=True, text=True)


def check_cli(binary, config_dir):
    """The hardware options and the layout search, end to end: bad options
    exit 2 naming the option, no fitting layout exits 1, and the search's
    pick, fed back as --set overrides, predicts the tokens/s its table shows."""
    failures = []
    cfg = f"{config_dir}/llama7b.pbtxt"
    for args, word in ((["--gpu", "b200"], "--gpu"), (["--ib-gbps", "0"], "--ib-gbps"),
                       (["--nvlink-gbs", "fast"], "--nvlink-gbs"), (["--gpus-per-node", "0"], "--gpus-per-node"),
                       (["--gpus", "0"], "--gpus"), (["--top", "3"], "--top")):
        r = run(binary, "--config", cfg, *args)
        print(f"{' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
        if r.returncode != 2 or word not in r.stderr:
            failures.append(f"{args}: exit {r.returncode}, stderr {r.stderr!r} (want 2 naming {word})")
    r = run(binary, "--config", f"{config_dir}/llama70b.pbtxt", "--gpus", "8")
    if r.returncode != 1 or "no layout" not in r.stderr:
        failures.append(f"70B on 8 GPUs: exit {r.returncode}, stderr {r.stderr!r} (want 1, no layout)")
    r = run(binary, "--config", cfg, "--gpus", "64", "--top", "3")
    lines = r.stdout.splitlines()
    rows = [l for l in lines if l.startswith("  tp ")]
    pick = [l for l in lines if l.strip().startswith("--set")]
    if r.returncode != 0 or len(rows) != 3 or len(pick) != 1:
        return failures + [f"search on 64 GPUs: exit {r.returncode}, output {r.stdout!r}"]
    sets = pick[0].split()[1::2]
    p = plan(binary, cfg, *sets)["step_time"]
    shown = float(rows[0].split()[-3])
    print(f"search pick {' '.join(sets)}: {shown:.0f} tokens/s/GPU in the table, "
          f"{p['tokens_per_s_per_gpu']:.0f} from dyt-plan --json")
    if abs(p["tokens_per_s_per_gpu"] - shown) > 0.5:
        failures.append(f"search pick predicts {p['tokens_per_s_per_gpu']} tokens/s/GPU, table shows {shown}")
    return failures


if __name__ == "__main__":
    main()
