#!/usr/bin/env python3
"""A rank that dies ends the whole job: never a hang.

  rank_death_test.py --train BIN --config FILE --data DIR --work DIR --mpirun MPIRUN [--seed S]

Starts a long data-parallel run (configs/tiny.pbtxt scaled down by --set,
parallel.dp = 3) under `mpirun --oversubscribe -np 3`, waits until it has
logged two steps, and SIGKILLs one rank a random moment into a step, while
the others compute or wait in the gradient sum. The job must end within
60 s of the kill, with a non-zero exit status, and leave no rank running.
Done twice: a worker rank (1 or 2) and rank 0, the one that writes. A job
still running after 60 s is killed here (its whole process group) and the
test fails.
Uses only the standard library.
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_files import fail, logged_steps  # noqa: E402

DEADLINE_S = 60.0
SMALL = ["model.d_model=32", "model.n_layers=2", "model.n_heads=2", "model.n_kv_heads=1",
         "model.ffn_hidden=64", "model.max_seq_len=32", "train.seq_len=32", "train.micro_batch=4",
         "train.global_batch_tokens=384", "train.steps=1000000", "train.eval_every=0",
         "train.log_every=1", "parallel.dp=3"]


def ranks_with(marker):
    """pid -> MPI rank of the live processes whose environment holds `marker`."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue  # a zombie has died already
        except OSError:
            continue
        if marker.encode() in env:
            rank = [e for e in env if e.startswith(b"OMPI_COMM_WORLD_RANK=")]
            if rank:
                found[int(pid)] = int(rank[0].split(b"=")[1])
    return found


def one_death(args, victim, rng, n):
    run_dir = os.path.join(args.work, f"victim{victim}")
    shutil.rmtree(run_dir, ignore_errors=True)
    marker = f"DYT_RANK_DEATH_TEST={os.getpid()}-{n}"
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMP_NUM_THREADS="1", DYT_RANK_DEATH_TEST=marker.split("=", 1)[1])
    cmd = [args.mpirun, "--oversubscribe", "-np", "3", args.train, "--config", args.config,
           "--set", f"data.train_shards={args.data}/train_*.bin",
           "--set", f"data.val_shards={args.data}/val_*.bin", "--set", f"train.run_dir={run_dir}"]
    for o in SMALL:
        cmd += ["--set", o]
    print("+", " ".join(cmd), flush=True)
    log = open(os.path.join(args.work, f"victim{victim}.txt"), "w")
    job = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        t0 = time.time()
        while logged_steps(run_dir) < 2:
            if job.poll() is not None or time.time() - t0 > 120:
                fail(f"the job did not get to step 2 (exit {job.poll()})")
            time.sleep(0.01)
        step_s = (time.time() - t0) / 2  # a generous bound on one step
        ranks = ranks_with(marker)
        pids = [p for p, r in ranks.items() if r == victim]
        if sorted(ranks.values()) != [0, 1, 2] or len(pids) != 1:
            fail(f"expected ranks 0, 1, 2 running, found {ranks}")
        time.sleep(rng.uniform(0.0, min(step_s, 0.5)))
        os.kill(pids[0], signal.SIGKILL)
        killed = time.time()
        try:
            rc = job.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            fail(f"rank {victim} was killed, and the job still runs {DEADLINE_S:.0f} s later: a hang")
        took = time.time() - killed
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
        log.close()
    time.sleep(0.5)
    left = ranks_with(marker)
    if left:
        fail(f"ranks still running after the job ended: {left}")
    if rc == 0:
        fail(f"the job exited 0 although rank {victim} was killed")
    print(f"rank {victim} of 3 SIGKILLed after step {logged_steps(run_dir)}: job ended {took:.1f} s later "
          f"with exit status {rc}, no rank left", flush=True)
    return took


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--mpirun", default="mpirun")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    rng = random.Random(args.seed)
    for n, victim in enumerate((rng.choice((1, 2)), 0)):
        one_death(args, victim, rng, n)
    print("PASS")


if __name__ == "__main__":
    main()
