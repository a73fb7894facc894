#!/usr/bin/env python3
"""scripts/plot_sweep.py and plot_alpha.py on a made-up sweep directory.

  check_plot_sweep.py --scripts DIR --work DIR [--python PATH]

Six runs over two fields (α₀ attention 0.5 / 1.0 × lr 1e-3 / 3e-3 / 1e30):
four finished with known validation losses, one diverged (NaN losses,
written as null), one failed. The heatmap, the loss curves and each DyT
run's α plot must be PNG files (signature, non-empty); sweep_plot.json must
hold every cell with its value, the diverged cell marked 'x' and the failed
one 'failed'; the printed summary must name both. A three-field sweep shows
the best run over the third field per cell. Without matplotlib the script
exits 3 naming python3-matplotlib.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

PNG = b"\x89PNG\r\n\x1a\n"


def fail(msg):
    sys.exit(f"FAIL: {msg}")


def write_run(out, name, losses, val, alphas=True):
    d = os.path.join(out, name)
    os.makedirs(d)
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"step": 0, "val_loss": 8.3}) + "\n")
        for step, loss in enumerate(losses, 1):
            row = {"step": step, "loss": loss, "skipped": loss is None}
            if alphas:
                row["alpha"] = {"model.layers.0.input_layernorm.alpha": 1 + 0.01 * step,
                                "model.layers.0.post_attention_layernorm.alpha": 1 - 0.01 * step,
                                "model.norm.alpha": 1.0}
            f.write(json.dumps(row) + "\n")
        if val is not None:
            f.write(json.dumps({"step": len(losses), "val_loss": val}) + "\n")


def row(name, fields, status, steps, train, val, code):
    r = {"run": name}
    r.update(fields)
    r.update({"status": status, "exit_code": code, "steps": steps, "train_loss": train, "val_loss": val})
    return r


def check_png(path):
    if not os.path.exists(path):
        fail(f"{path} was not written")
    with open(path, "rb") as f:
        head = f.read(8)
    if head != PNG or os.path.getsize(path) < 1000:
        fail(f"{path} is not a PNG image ({os.path.getsize(path)} bytes, starts {head!r})")


def plot(args, out, *extra, env=None):
    p = subprocess.run([args.python, os.path.join(args.scripts, "plot_sweep.py"), out, *extra],
                       capture_output=True, text=True, env=env)
    print(p.stdout, p.stderr, sep="\n")
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scripts", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    out = os.path.join(args.work, "plot_sweep")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)

    fa, fl = "model.alpha_init.attention", "train.lr"
    table = []
    vals = {("0.5", "0.001"): 7.5, ("0.5", "0.003"): 7.25, ("1.0", "0.001"): 7.375, ("1.0", "0.003"): 7.125}
    for (a, lr), v in vals.items():
        name = f"attention={a}_lr={lr}"
        write_run(out, name, [8.2, 7.9, v + 0.1], v)
        table.append(row(name, {fa: a, fl: lr}, "finished", 3, v + 0.1, v, 0))
    write_run(out, "attention=0.5_lr=1e30", [8.2, None], None)
    table.append(row("attention=0.5_lr=1e30", {fa: "0.5", fl: "1e30"}, "diverged", 2, None, None, 1))
    os.makedirs(os.path.join(out, "attention=1.0_lr=1e30"))  # failed before its first step
    table.append(row("attention=1.0_lr=1e30", {fa: "1.0", fl: "1e30"}, "failed", 0, None, None, 2))
    with open(os.path.join(out, "sweep.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in table)

    p = plot(args, out)
    if p.returncode != 0:
        fail(f"plot_sweep.py exited {p.returncode}")
    for png in ("sweep_heatmap.png", "sweep_losses.png", "attention=0.5_lr=0.003/alpha.png",
                "attention=0.5_lr=1e30/alpha.png"):
        check_png(os.path.join(out, png))
    if os.path.exists(os.path.join(out, "attention=1.0_lr=1e30", "alpha.png")):
        fail("a run without metrics should get no α plot")
    side = json.load(open(os.path.join(out, "sweep_plot.json")))
    if side["y_field"] != fa or side["x_field"] != fl or side["x_values"] != ["0.001", "0.003", "1e30"] \
            or side["y_values"] != ["0.5", "1.0"]:
        fail(f"the heatmap should put {fa} down and {fl} across, in the sweep's order: {side}")
    cells = {(c["y"], c["x"]): c for c in side["cells"]}
    if len(cells) != 6:
        fail(f"expected 6 cells, got {len(cells)}")
    for key, v in vals.items():
        if cells[key]["val_loss"] != v or cells[key]["mark"] != "":
            fail(f"cell {key} should show {v} unmarked: {cells[key]}")
    if cells[("0.5", "1e30")]["mark"] != "x" or cells[("0.5", "1e30")]["status"] != "diverged":
        fail(f"the diverged cell should be marked x: {cells[('0.5', '1e30')]}")
    if cells[("1.0", "1e30")]["mark"] != "failed" or cells[("1.0", "1e30")]["val_loss"] is not None:
        fail(f"the failed cell should be marked failed: {cells[('1.0', '1e30')]}")
    if "x  model.alpha_init.attention=0.5 train.lr=1e30 (diverged)" not in p.stdout:
        fail("the summary should name the diverged cell")

    # Three fields: each (attention, lr) cell shows its best run over the third.
    out3 = os.path.join(args.work, "plot_sweep3")
    shutil.rmtree(out3, ignore_errors=True)
    os.makedirs(out3)
    table3 = []
    for ffn, v in (("0.1", 7.5), ("0.2", 7.0)):
        name = f"attention=1.0_lr=0.003_ffn={ffn}"
        write_run(out3, name, [8.0, v], v, alphas=False)
        table3.append(row(name, {fa: "1.0", fl: "0.003", "model.alpha_init.ffn": ffn}, "finished", 2, v, v, 0))
    with open(os.path.join(out3, "sweep.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in table3)
    if plot(args, out3).returncode != 0:
        fail("plot_sweep.py failed on a three-field sweep")
    c = json.load(open(os.path.join(out3, "sweep_plot.json")))["cells"]
    if len(c) != 1 or c[0]["val_loss"] != 7.0 or c[0]["run"] != "attention=1.0_lr=0.003_ffn=0.2":
        fail(f"the cell should show the best run over the third field: {c}")
    if plot(args, out3, "--x", "train.nope").returncode == 0:
        fail("an unknown --x field should be refused")

    # Without matplotlib: a clear message and exit 3 (a stand-in package that fails to import).
    fake = os.path.join(args.work, "no_matplotlib")
    os.makedirs(os.path.join(fake, "matplotlib"), exist_ok=True)
    with open(os.path.join(fake, "matplotlib", "__init__.py"), "w") as f:
        f.write("raise ImportError('simulated: no matplotlib here')\n")
    p = plot(args, out, env=dict(os.environ, PYTHONPATH=fake))
    if p.returncode != 3 or "python3-matplotlib" not in p.stderr:
        fail(f"without matplotlib plot_sweep.py should exit 3 naming python3-matplotlib, got {p.returncode}")
    print("PASS")


if __name__ == "__main__":
    main()
