#!/usr/bin/env python3
"""dyt-sweep and launch/slurm/dyt-train.sbatch against a real one-node Slurm.

  check_slurm_sweep.py --sweep BIN --train BIN --config FILE --data DIR --work DIR --sbatch-script FILE

Starts munged (a generated key), slurmctld and slurmd (foreground, -D) from
Debian's packages on this machine, with every file in a temporary directory
(slurm.conf naming this host, reached at 127.0.0.1 so that the host name
need not resolve, and the CPUs `slurmd -C` reports, no
accounting, JobRequeue=1, a 10 s credential life so a requeued job waits
seconds, not the default two minutes), then:

1. runs a 4-combination sweep of the tiny config with the local launcher;
2. runs the same sweep with --launcher slurm (one sbatch array job) and, mid
   run, requeues index 0 (`scontrol requeue J_0`: Slurm's SIGTERM, dyt-train
   saves, the job starts again) and sends index 1 the time-limit notice
   (`scancel --batch --signal=USR1 J_1`: the script forwards it, dyt-train
   saves, the script requeues itself); both must resume from their
   checkpoints, and the table (sweep.jsonl: final training and validation
   losses to the last bit, steps, status) must equal the local one;
3. `dyt-sweep --collect` on the Slurm sweep writes the same table again;
4. launch/slurm/dyt-train.sbatch runs combination 0 on its own, is given the
   notice mid run, requeues itself and ends with the local run's losses.

Stops the daemons whatever happens. Needs root (slurmd runs jobs as their
user) and the packages of scripts/setup.sh.
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

TOOLS = ["munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo", "srun"]
SWEEP = "model.alpha_init.attention=0.5,1.0;train.lr=0.003,0.002"
STEPS = 16


def fail(msg):
    sys.exit(f"FAIL: {msg}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Slurm:
    """munged + slurmctld + slurmd on localhost, all state under `root`."""

    def __init__(self, root):
        self.root = root
        self.procs = []
        self.env = dict(os.environ, SLURM_CONF=os.path.join(root, "slurm.conf"))

    def start(self):
        r = self.root
        munge = os.path.join(r, "munge")
        for d in ("munge", "state", "spool", "log"):
            os.makedirs(os.path.join(r, d), mode=0o700 if d == "munge" else 0o755)
        os.chmod(r, 0o755)
        key = os.path.join(munge, "munge.key")
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True)
        os.chmod(key, 0o400)
        self.sock = os.path.join(munge, "munge.sock")
        # munged forks into the background and writes its pid file.
        subprocess.run(["munged", "--force", f"--key-file={key}", f"--socket={self.sock}",
                        f"--pid-file={munge}/munged.pid", f"--seed-file={munge}/seed",
                        f"--log-file={r}/log/munged.log"], check=True)
        host = socket.gethostname().split(".")[0]
        probe = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
        cpus = int(re.search(r"CPUs=(\d+)", probe).group(1))
        conf = f"""ClusterName=dyttest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.sock},cred_expire=10
SlurmUser=root
SlurmdUser=root
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=600
KillWait=30
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
        with open(self.env["SLURM_CONF"], "w") as f:
            f.write(conf)
        for name in ("slurmctld", "slurmd"):
            log = open(os.path.join(r, "log", name + ".out"), "w")
            self.procs.append(subprocess.Popen([name, "-D", "-f", self.env["SLURM_CONF"]], env=self.env,
                                               stdout=log, stderr=subprocess.STDOUT))
            time.sleep(1)
        deadline = time.time() + 60
        while time.time() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    self.dump_logs()
                    fail(f"{p.args[0]} exited {p.returncode} at start (logs above)")
            state = self.run(["sinfo", "-h", "-o", "%T"], check=False).stdout.strip()
            if state == "idle":
                print(f"slurm: one node ({host}, {cpus} CPUs) idle", flush=True)
                return
            time.sleep(1)
        self.dump_logs()
        fail(f"the Slurm node did not become idle in 60 s (sinfo: '{state}')")

    def run(self, cmd, check=True):
        p = subprocess.run(cmd, env=self.env, capture_output=True, text=True)
        if check and p.returncode != 0:
            fail(f"{' '.join(cmd)} exited {p.returncode}: {p.stdout}{p.stderr}")
        return p

    def signal_batch(self, job, log_path, signal="USR1"):
        """scancel --batch --signal, judged by its effect: dyt-train's log
        saying it got the signal. slurmctld may answer "Job can not be altered
        now, try again later" (scancel exits non-zero) after delivering it —
        the job saves and requeues itself within a second, so the job is
        already in transition when scancel looks again — or before, while
        another task of the array is being requeued. Retried until delivered,
        for up to 60 s."""
        deadline = time.time() + 60
        while True:
            p = self.run(["scancel", "--batch", f"--signal={signal}", job], check=False)
            if p.returncode == 0:
                return
            settle = time.time() + 10
            while time.time() < settle:
                if os.path.exists(log_path) and f"{signal} after step" in read(log_path):
                    return
                time.sleep(0.2)
            if time.time() > deadline:
                fail(f"scancel --batch --signal={signal} {job} exited {p.returncode} and {log_path} "
                     f"shows no {signal}: {p.stdout}{p.stderr}")

    def dump_logs(self):
        for name in sorted(os.listdir(os.path.join(self.root, "log"))):
            with open(os.path.join(self.root, "log", name), errors="replace") as f:
                print(f"--- {name} (last lines)\n" + "".join(f.readlines()[-30:]))

    def stop(self):
        subprocess.run(["scancel", "--full", "--user=root"], env=self.env, capture_output=True)
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        pid_file = os.path.join(self.root, "munge", "munged.pid")
        if os.path.exists(pid_file):
            subprocess.run(["munged", "--stop", f"--socket={self.sock}"], capture_output=True)


def sweep_args(args, out, launcher):
    return [args.sweep, "--config", args.config,
            "--set", f"data.train_shards={args.data}/train_*.bin",
            "--set", f"data.val_shards={args.data}/val_*.bin",
            "--set", f"train.steps={STEPS}", "--set", "train.global_batch_tokens=2048",
            "--set", "train.eval_every=8", "--set", "train.eval_batches=2", "--set", "train.log_every=1",
            "--set", "train.warmup_steps=0", "--set", "checkpoint.every_steps=4",
            "--sweep", SWEEP, "--out", out, "--launcher", launcher, "--train", args.train]


def last_step(run_dir):
    """The last training step in run_dir's metrics.jsonl (0 when none yet)."""
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            steps = [json.loads(line)["step"] for line in f if '"loss"' in line]
        return steps[-1] if steps else 0
    except (OSError, ValueError):
        return 0


def wait_for_step(run_dir, step, proc_alive, what):
    """Until run_dir has logged `step` (a checkpoint lies behind it)."""
    deadline = time.time() + 240
    while time.time() < deadline:
        s = last_step(run_dir)
        if s >= STEPS:
            fail(f"{what} finished before it could be interrupted; raise STEPS")
        if s >= step:
            return s
        if not proc_alive():
            fail(f"the sweep ended before {what} reached step {step}")
        time.sleep(0.1)
    fail(f"{what} did not reach step {step} in 240 s")


def rows(out):
    with open(os.path.join(out, "sweep.jsonl")) as f:
        return {r["run"]: r for r in map(json.loads, f)}


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def check_resumed(log_path, signal, what):
    log = read(log_path)
    if f"{signal} after step" not in log or "holds the run: the same command continues it" not in log:
        fail(f"{what}: dyt-train should have saved on {signal}:\n{log[-3000:]}")
    if not re.search(r"done: \d+ steps \(resumed after \d+\)", log):
        fail(f"{what}: the requeued job should have resumed from the checkpoint:\n{log[-3000:]}")


def main():
    ap = argparse.ArgumentParser()
    for a in ("--sweep", "--train", "--config", "--data", "--work", "--sbatch-script"):
        ap.add_argument(a, required=True)
    args = ap.parse_args()
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        fail(f"{', '.join(missing)} not found: scripts/setup.sh installs slurmctld, slurmd, slurm-client and munge")
    if os.geteuid() != 0:
        fail("needs root: slurmd starts each job as its user")
    for a in ("sweep", "train", "config", "data", "sbatch_script"):
        setattr(args, a, os.path.abspath(getattr(args, a)))
    os.makedirs(args.work, exist_ok=True)
    # Unix socket paths must stay short: the daemons' files go under /tmp.
    root = tempfile.mkdtemp(prefix="dyt-slurm-")
    slurm = Slurm(root)
    try:
        slurm.start()
        test(args, slurm)
    except BaseException:
        slurm.dump_logs()
        raise
    finally:
        slurm.stop()
        shutil.rmtree(root, ignore_errors=True)
    print("PASS")


def test(args, slurm):
    env = slurm.env
    local, remote = os.path.join(args.work, "sweep_local"), os.path.join(args.work, "sweep_slurm")
    for d in (local, remote):
        shutil.rmtree(d, ignore_errors=True)

    t = time.time()
    p = subprocess.run(sweep_args(args, local, "local") + ["--jobs", "2", "--no-plot"], env=env,
                       capture_output=True, text=True)
    print(p.stdout[-2500:], p.stderr[-2000:], sep="\n", flush=True)
    if p.returncode != 0:
        fail(f"the local sweep exited {p.returncode}")
    print(f"local sweep: {time.time() - t:.0f} s", flush=True)
    want = rows(local)
    if len(want) != 4 or any(r["status"] != "finished" or r["steps"] != STEPS for r in want.values()):
        fail(f"the local sweep should finish 4 runs of {STEPS} steps: {want}")

    t = time.time()
    sweep = subprocess.Popen(sweep_args(args, remote, "slurm") + ["--poll", "1", "--no-plot"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    job = None
    for line in sweep.stdout:  # until sbatch has answered
        out.append(line)
        m = re.search(r"as array job (\d+)", line)
        if m:
            job = m.group(1)
            break
    if job is None:
        sweep.wait()
        fail("dyt-sweep did not submit an array job:\n" + "".join(out))
    print(f"slurm: array job {job}", flush=True)
    names = list(want)  # the sweep's order = the array indices
    alive = lambda: sweep.poll() is None  # noqa: E731
    s0 = wait_for_step(os.path.join(remote, names[0]), 5, alive, f"array task {job}_0")
    slurm.run(["scontrol", "requeue", f"{job}_0"])
    print(f"slurm: requeued {job}_0 after step {s0}", flush=True)
    s1 = wait_for_step(os.path.join(remote, names[1]), 5, alive, f"array task {job}_1")
    slurm.signal_batch(f"{job}_1", os.path.join(remote, names[1], "train.log"))
    print(f"slurm: time-limit notice to {job}_1 after step {s1}", flush=True)
    rest = sweep.stdout.read()
    sweep.wait()
    print("".join(out) + rest, flush=True)
    if sweep.returncode != 0:
        fail(f"the Slurm sweep exited {sweep.returncode}")
    print(f"slurm sweep: {time.time() - t:.0f} s", flush=True)

    check_resumed(os.path.join(remote, names[0], "train.log"), "SIGTERM", f"{job}_0 (scontrol requeue)")
    check_resumed(os.path.join(remote, names[1], "train.log"), "SIGUSR1", f"{job}_1 (time-limit notice)")
    if "time-limit notice: requeued" not in read(os.path.join(remote, names[1], "train.log")):
        fail(f"{job}_1: the array script should have requeued itself on the notice")
    got = rows(remote)
    if got != want:
        fail("the Slurm sweep's table differs from the local one:\n"
             + "\n".join(f"local {want.get(k)}\nslurm {got.get(k)}" for k in sorted(set(want) | set(got))))
    print("the Slurm sweep's table equals the local one, bit for bit", flush=True)

    table = read(os.path.join(remote, "sweep.jsonl"))
    os.remove(os.path.join(remote, "sweep.jsonl"))
    p = subprocess.run([args.sweep, "--collect", "--out", remote, "--no-plot"], capture_output=True, text=True)
    if p.returncode != 0 or read(os.path.join(remote, "sweep.jsonl")) != table:
        fail(f"dyt-sweep --collect should write the same table (exit {p.returncode}):\n{p.stdout}{p.stderr}")

    # The documented batch script, on its own: combination 0 again, the notice mid run.
    run_dir = os.path.join(args.work, "sbatch_run")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    cmd = sweep_args(args, "-", "local")
    train_args = cmd[cmd.index("--config"):cmd.index("--sweep")]
    train_args += ["--set", "model.alpha_init.attention=0.5", "--set", "train.lr=0.003",
                   "--set", f"train.run_dir={run_dir}", "--set", "train.metrics_file=",
                   "--set", f"checkpoint.dir={run_dir}/checkpoints"]
    if names[0] != "attention=0.5_lr=0.003":
        fail(f"expected combination 0 to be attention=0.5_lr=0.003, got {names[0]}")
    out_file = os.path.join(run_dir, "slurm.out")
    sub = slurm.run(["sbatch", "--parsable", "--nodes=1", "--ntasks-per-node=1", "--gpus-per-node=0",
                     "--cpus-per-task=1", f"--output={out_file}", f"--chdir={args.work}",
                     f"--export=ALL,DYT_TRAIN={args.train}", args.sbatch_script] + train_args)
    job = sub.stdout.strip().split(";")[0]
    s = wait_for_step(run_dir, 5, lambda: True, f"dyt-train.sbatch job {job}")
    slurm.signal_batch(job, out_file)
    print(f"slurm: time-limit notice to dyt-train.sbatch job {job} after step {s}", flush=True)
    deadline = time.time() + 240
    while slurm.run(["squeue", "-h", "-j", job], check=False).stdout.strip():
        if time.time() > deadline:
            fail(f"dyt-train.sbatch job {job} did not end in 240 s")
        time.sleep(1)
    check_resumed(out_file, "SIGUSR1", f"dyt-train.sbatch job {job}")
    log = read(out_file)
    if "requeued to continue from the checkpoint" not in log or "(restart 1)" not in log:
        fail(f"dyt-train.sbatch should requeue itself on the notice and start again:\n{log[-3000:]}")
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        lines = [json.loads(x) for x in f]
    final = [x for x in lines if "loss" in x][-1]
    val = [x for x in lines if "val_loss" in x][-1]
    ref = want["attention=0.5_lr=0.003"]
    if final["step"] != STEPS or final["loss"] != ref["train_loss"] or val["val_loss"] != ref["val_loss"]:
        fail(f"dyt-train.sbatch's run should end as the local one: step {final['step']}, loss {final['loss']!r}, "
             f"val {val['val_loss']!r}; local {ref}")
    print("dyt-train.sbatch: saved on notice, requeued, resumed; losses equal the local run's", flush=True)


if __name__ == "__main__":
    main()
