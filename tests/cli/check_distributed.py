#!/usr/bin/env python3
"""Data-parallel soundnet-train under mpirun (OpenMPI) on a store written by numpy:
  - 2 ranks x 4 clips with --sync-batch-norm compute what 1 process x 8 clips computes: the
    first step's loss (within 1e-6, relative) and gradients (within 1e-4 relative L2 per
    tensor), then the loss at every step (1e-4) and the weights after 4 steps (1e-2). The
    later tolerances are wider because Adam's normalised step moves every weight by about the
    learning rate whatever its gradient's size: where a gradient is near zero, rounding (which
    differs with the summation order) decides its sign. The conv biases that feed a batch norm
    (exact gradient zero: rounding alone) and the running means (which hold those biases) are
    left out of the weight comparison;
  - without it each rank normalises its own 4 clips: the losses differ (the documented
    difference) and the ranks still hold one model;
  - a checkpoint of 2 ranks resumes on 1 process and continues the 2-rank run;
  - rank 0 alone prints, logs and saves;
  - a rank that hangs (SIGSTOP) is named by the others within --collective-timeout, a rank
    that is killed is named by mpirun, and a batch that does not split is refused."""
import argparse
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from store_writer import make_video, write_store  # noqa: E402
from checks import check, finish, tensors  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--train", required=True)
p.add_argument("--mpirun", required=True, help="mpirun, or none in a build without MPI")
p.add_argument("--workdir", required=True)
a = p.parse_args()
if a.mpirun == "none":
    print("SKIPPED: soundnet-train is built without MPI (soundnet::distributed; Debian: libopenmpi-dev openmpi-bin)")
    sys.exit(77)
shutil.rmtree(a.workdir, ignore_errors=True)
os.makedirs(a.workdir)
w = a.workdir


env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_orte_base_help_aggregate="0",
           OMPI_MCA_mca_base_component_disable_dlclose="1")
if os.environ.get("SOUNDNET_UNDER_SANITIZER"):  # what OpenMPI never frees is not ours to report
    supp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sanitizer", "lsan-mpi.supp")
    env["LSAN_OPTIONS"] = f"suppressions={supp}:print_suppressions=0:fast_unwind_on_malloc=0"
rng = np.random.default_rng(5)
store = os.path.join(w, "store")
write_store(store, [("objects", 1000), ("scenes", 365)],
            [make_video(rng, f"v{i}.mp4", 6 + 2 * i, [(1000, 10 * i), (365, 7 * i)]) for i in range(6)])
common = ["--arch", "soundnet8", "--dataset", store, "--crop-seconds", "10", "--seed", "3",
          "--validation-videos", "1", "--validate-every", "2", "--threads", "1"]


def train(ranks, *args, timeout=600, batch=8):
    cmd = ([a.mpirun, "-np", str(ranks)] if ranks else []) + [a.train] + common + ["--batch-size", str(batch)] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def losses(out):
    return [float(m) for m in re.findall(r"^step \d+/\d+ loss (\S+)", out, re.M)]


def compared(x, y):
    """The largest relative L2 difference over the tensors that rounding cannot move by lr."""
    worst, name = 0.0, ""
    for k in x:
        if re.fullmatch(r"conv\d\.bias|bn\d\.running_mean", k):
            continue
        d = np.linalg.norm(x[k].astype(np.float64) - y[k]) / max(np.linalg.norm(x[k].astype(np.float64)), 1e-30)
        if d > worst:
            worst, name = d, k
    return worst, name


def close_losses(x, y, tol=1e-5):
    return len(x) == len(y) > 0 and all(abs(u - v) <= tol * abs(u) for u, v in zip(x, y))


steps = ["--steps", "4"]
one = train(0, *steps, "--save", f"{w}/one.safetensors", "--dump-gradients", f"{w}/one.grad")
check(one.returncode == 0 and len(losses(one.stdout)) == 4, "1 process x 8 clips, 4 steps " + one.stderr[-300:])
two = train(2, *steps, "--sync-batch-norm", "--save", f"{w}/two.safetensors", "--checkpoint", f"{w}/two.ckpt",
            "--dump-gradients", f"{w}/two.grad")
check(two.returncode == 0, "2 ranks x 4 clips with --sync-batch-norm " + two.stderr[-500:])
if one.returncode == 0 and two.returncode == 0:
    l1, l2 = losses(one.stdout), losses(two.stdout)
    check(abs(l1[0] - l2[0]) <= 1e-6 * abs(l1[0]), f"the first step's loss within 1e-6: {l1[0]} / {l2[0]}")
    g1, g2 = tensors(f"{w}/one.grad")[0], tensors(f"{w}/two.grad")[0]
    scale = max(np.abs(g).max() for g in g1.values())
    worst, name = compared(g1, g2)
    bias = max(np.abs(g1[k].astype(np.float64) - g2[k]).max() for k in g1 if re.fullmatch(r"conv\d\.bias", k))
    check(worst <= 1e-4 and bias <= 1e-6 * scale,
          f"the first step's gradients (the batch's mean, through synchronised batch norm) within 1e-4 relative L2: "
          f"the largest difference {worst:.2e} ({name}); conv biases before batch norm (exact gradient 0) within "
          f"1e-6 of the largest gradient: {bias / scale:.1e}")
    check(close_losses(l1, l2, 1e-4), f"the same loss at every step within 1e-4: {l1} / {l2}")
    worst, name = compared(tensors(f"{w}/one.safetensors")[0], tensors(f"{w}/two.safetensors")[0])
    check(worst <= 1e-2, f"the same weights after 4 steps within 1e-2 (relative L2): the largest difference {worst:.2e} ({name})")
    check(two.stdout.count("step 1/4 ") == 1 and "2 ranks x 4 clips, batch norm synchronised" in two.stderr,
          "rank 0 alone prints the steps")
    written = sorted(f for f in os.listdir(w) if not f.endswith(".png"))  # the plots need gnuplot
    check(written == sorted(["store", "one.grad", "one.safetensors", "one.safetensors.log.csv", "two.grad",
                             "two.safetensors", "two.ckpt", "two.safetensors.log.csv"]),
          "rank 0 alone writes (each file once, no rank suffixes): " + " ".join(written))
    log = open(f"{w}/two.safetensors.log.csv").read().splitlines()
    check(len(log) == 3 and [r.split(",")[0] for r in log[1:]] == ["2", "4"], "one log, rows at steps 2 and 4")
    ckpt = json.loads(open(f"{w}/two.ckpt", "rb").read()[8:8 + struct.unpack("<Q", open(f"{w}/two.ckpt", "rb").read(8))[0]])
    meta = ckpt.get("__metadata__", {})
    check(meta.get("ranks") == "2" and meta.get("sync_batch_norm") == "1", f"the checkpoint records the ranks: {meta.get('ranks')}")

nosync = train(2, *steps, "--save", f"{w}/nosync.safetensors")
check(nosync.returncode == 0 and "batch norm per rank" in nosync.stderr, "2 ranks without --sync-batch-norm " + nosync.stderr[-300:])
if one.returncode == 0 and nosync.returncode == 0:
    l1, l3 = losses(one.stdout), losses(nosync.stdout)
    check(len(l3) == 4 and abs(l3[0] - l1[0]) > 1e-3 * abs(l1[0]),
          f"without it the first loss differs (batch statistics of 4 clips): {l3[0]:.6f} against {l1[0]:.6f}")

# a checkpoint of 2 ranks at step 2 resumes on 1 process and continues the 2-rank run
half = train(2, "--steps", "2", "--sync-batch-norm", "--save", f"{w}/half.safetensors", "--checkpoint", f"{w}/half.ckpt")
rest = train(0, "--steps", "4", "--save", f"{w}/rest.safetensors", "--resume", f"{w}/half.ckpt")
check(half.returncode == 0 and rest.returncode == 0 and "written by 2 rank(s), this run has 1" in rest.stderr,
      "2 ranks to step 2, resumed on 1 process to step 4 " + (half.stderr + rest.stderr)[-300:])
if half.returncode == 0 and rest.returncode == 0 and two.returncode == 0:
    check(close_losses(losses(two.stdout)[2:], losses(rest.stdout), 1e-4), "the resumed steps' losses are the 2-rank run's")
    worst, name = compared(tensors(f"{w}/two.safetensors")[0], tensors(f"{w}/rest.safetensors")[0])
    check(worst <= 1e-2, f"... and so are its weights: the largest difference {worst:.2e} ({name})")

# refusals
r = train(4, "--steps", "1", "--save", f"{w}/x.safetensors", batch=6)
check(r.returncode != 0 and "--batch-size 6 is not a multiple of the 4 ranks" in r.stderr, "a batch that does not split is refused")
r = subprocess.run([a.mpirun, "-np", "2", a.train, "--arch", "soundnet8", "--manifest", f"{w}/none.csv", "--save",
                    f"{w}/x.safetensors"], capture_output=True, text=True, env=env, timeout=300)
check(r.returncode != 0 and "reads a dataset store" in r.stderr, "the manifest mode under mpirun is refused")


def run_and_signal(sig, timeout_flag):
    """Starts 2 ranks for many steps, sends `sig` to rank 1 after its first step, returns
    (exit code, stderr, seconds from the signal to the end)."""
    out = open(f"{w}/signal.out", "w")
    err = open(f"{w}/signal.err", "w")
    proc = subprocess.Popen([a.mpirun, "-np", "2", a.train] + common + ["--batch-size", "8", "--steps", "1000", "--save", f"{w}/x.safetensors",
                                                                          "--collective-timeout", timeout_flag],
                            stdout=out, stderr=err, env=env, text=True)
    pid, t0 = None, time.time()
    while time.time() - t0 < 120 and proc.poll() is None:
        text = open(f"{w}/signal.err").read()
        m = re.search(r"rank 1 of 2 on \S+ \(pid (\d+)\)", text)
        if m and "step 1/" in open(f"{w}/signal.out").read():
            pid = int(m.group(1))
            break
        time.sleep(0.2)
    if pid is None:
        proc.kill()
        return None, open(f"{w}/signal.err").read(), 0
    os.kill(pid, sig)
    t1 = time.time()
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    took = time.time() - t1
    try:
        os.kill(pid, signal.SIGKILL)  # a stopped rank that outlived the abort
    except ProcessLookupError:
        pass
    return proc.returncode, open(f"{w}/signal.err").read(), took


rc, err, took = run_and_signal(signal.SIGSTOP, "5")
check(rc not in (None, 0) and "rank(s) 1 did not arrive (hung, dead" in err and took < 60,
      f"a hung rank is named by the others in {took:.1f} s (--collective-timeout 5): "
      + next((l for l in err.splitlines() if "did not arrive" in l), err[-300:]))
rc, err, took = run_and_signal(signal.SIGKILL, "300")
check(rc not in (None, 0) and re.search(r"process rank 1 .*exited on signal 9", err) is not None and took < 60,
      f"a killed rank is named by mpirun in {took:.1f} s: " + next((l for l in err.splitlines() if "signal 9" in l), err[-300:]))

finish()
