"""Small helpers shared by the end-to-end run checks in this folder."""
import os
import sys


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def logged_steps(run_dir):
    """Optimizer steps logged in run_dir/metrics.jsonl (0 when none yet)."""
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            return sum(1 for line in f if '"loss"' in line)
    except FileNotFoundError:
        return 0


def fail(msg):
    sys.exit("FAIL: " + msg)
