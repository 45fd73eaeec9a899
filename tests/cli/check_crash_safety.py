#!/usr/bin/env python3
"""soundnet-train survives kill -9, non-finite values and a full disk:
  - a run killed (SIGKILL) again and again, at random moments and while a checkpoint is being
    written, and resumed each time from its checkpoint, ends with the uninterrupted run's
    weights and Adam state bit for bit; after every kill the checkpoint on disk is either absent
    or whole (it parses and its CRC-32 matches);
  - a flipped bit in a checkpoint is refused on resume, naming the file;
  - a NaN (from an absurd learning rate) stops the run naming the step and the tensor, and the
    last checkpoint holds only finite values; --non-finite skip skips such batches, records them,
    and a resumed skipping run equals the uninterrupted one;
  - a write that fails (file size limit: the disk-full path) is an error naming the checkpoint,
    and the last good checkpoint survives."""
import argparse
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from store_writer import make_video, write_store  # noqa: E402
from checks import check, finish, tensors  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--train", required=True)
p.add_argument("--workdir", required=True)
p.add_argument("--kills", type=int, default=6, help="kills of the interrupted run (at least 2 of them mid-checkpoint)")
a = p.parse_args()
shutil.rmtree(a.workdir, ignore_errors=True)
os.makedirs(a.workdir)
w = a.workdir


rng = np.random.default_rng(11)
store = os.path.join(w, "store")
write_store(store, [("objects", 1000), ("scenes", 365)],
            [make_video(rng, f"v{i}.mp4", 11 + 2 * i, [(1000, 10 * i), (365, 7 * i)]) for i in range(4)])
STEPS = 8
base = [a.train, "--arch", "soundnet5", "--dataset", store, "--crop-seconds", "10", "--batch-size", "2",
        "--validation-videos", "1", "--validate-every", "0", "--threads", "2"]


def run(*args, **kw):
    return subprocess.run(base + list(args), capture_output=True, text=True, **kw)


# ---- the uninterrupted reference ----
r = run("--steps", str(STEPS), "--save", f"{w}/ref.safetensors", "--checkpoint", f"{w}/ref.ckpt", "--checkpoint-every", "1")
check(r.returncode == 0, "the uninterrupted run " + r.stderr[-400:])
ref, ref_meta = tensors(f"{w}/ref.ckpt")

# ---- killed again and again, resumed each time ----
ck = f"{w}/killed.ckpt"
random.seed(7)
kills = mid_checkpoint = attempts = 0
whole_after_kill = True
finished = None
while attempts < a.kills + 10:
    attempts += 1
    args = ["--steps", str(STEPS), "--save", f"{w}/killed.safetensors", "--checkpoint", ck, "--checkpoint-every", "1"]
    if os.path.exists(ck):
        args += ["--resume", ck]
    proc = subprocess.Popen(base + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if kills < a.kills:
        aim_mid = kills % 3 == 1  # every third kill waits for a checkpoint being written
        deadline = time.monotonic() + (30 if aim_mid else random.uniform(0.3, 2.5))
        hit_tmp = False
        while proc.poll() is None and time.monotonic() < deadline:
            if aim_mid and os.path.exists(ck + ".tmp"):
                hit_tmp = True
                break
            time.sleep(0.0005 if aim_mid else 0.01)
        if proc.poll() is None:
            hit_tmp = hit_tmp or os.path.exists(ck + ".tmp")
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            kills += 1
            mid_checkpoint += hit_tmp
            if os.path.exists(ck):
                try:
                    tensors(ck)
                except Exception as e:  # noqa: BLE001
                    whole_after_kill = False
                    print(f"after kill {kills}: {e}")
            continue
    out, err = proc.communicate()
    if proc.returncode != 0:
        check(False, f"a resumed run failed: {err[-400:]}")
        break
    finished = out
    break
check(kills >= a.kills, f"{kills} kills (-9) of the training run")
check(mid_checkpoint >= 2, f"{mid_checkpoint} of them while a checkpoint was being written")
check(whole_after_kill, "after every kill the checkpoint was absent or whole (parsed, CRC-32 matched)")
if finished is not None:
    got, meta = tensors(ck)
    same = got.keys() == ref.keys() and all(np.array_equal(got[k], ref[k]) for k in ref)
    check(same and meta.get("adam_step") == ref_meta.get("adam_step"),
          "the killed-and-resumed run ends with the uninterrupted run's weights and Adam state, bit for bit")

# ---- a corrupt checkpoint is refused ----
bad = f"{w}/flipped.ckpt"
raw = bytearray(open(f"{w}/ref.ckpt", "rb").read())
raw[-1000] ^= 0x10
open(bad, "wb").write(raw)
r = run("--steps", str(STEPS + 1), "--save", f"{w}/x.safetensors", "--resume", bad)
check(r.returncode == 1 and "flipped.ckpt" in r.stderr and "CRC-32" in r.stderr,
      "a checkpoint with a flipped bit: refused, naming the file " + r.stderr.strip()[-200:])

# ---- non-finite values ----
r = run("--steps", "6", "--lr", "1e30", "--save", f"{w}/nan.safetensors", "--checkpoint", f"{w}/nan.ckpt",
        "--checkpoint-every", "1")
msg = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
check(r.returncode == 1 and "step " in msg and ("loss is" in msg or "gradient of" in msg),
      f"lr 1e30: the run stops naming the step and the tensor: {msg}")
if os.path.exists(f"{w}/nan.ckpt"):
    t, _ = tensors(f"{w}/nan.ckpt")
    check(all(np.isfinite(v).all() for v in t.values()), "the last checkpoint holds only finite values")
check(not os.path.exists(f"{w}/nan.safetensors"), "no weights file is written by the stopped run")

r = run("--steps", "4", "--lr", "1e30", "--non-finite", "skip", "--save", f"{w}/skip.safetensors",
        "--checkpoint", f"{w}/skip.ckpt")
skipped = r.stderr.count("batch skipped")
check(r.returncode == 0 and skipped >= 1, f"--non-finite skip: the run ends, {skipped} batch(es) skipped " + r.stderr[-300:])
if r.returncode == 0:
    t, meta = tensors(f"{w}/skip.ckpt")
    check(all(np.isfinite(v).all() for v in t.values()) and meta.get("skipped_batches") == str(skipped)
          and int(meta["adam_step"]) == 4 - skipped,
          f"the skipping run's checkpoint is finite and records {skipped} skipped batch(es), {4 - skipped} Adam steps")
    r1 = run("--steps", "2", "--lr", "1e30", "--non-finite", "skip", "--save", f"{w}/skip2.safetensors",
             "--checkpoint", f"{w}/skip2.ckpt")
    r2 = run("--steps", "4", "--non-finite", "skip", "--resume", f"{w}/skip2.ckpt", "--save", f"{w}/skip2.safetensors",
             "--checkpoint", f"{w}/skip2.ckpt")
    t2, _ = tensors(f"{w}/skip2.ckpt") if r2.returncode == 0 else ({}, {})
    check(r1.returncode == 0 and r2.returncode == 0 and t2.keys() == t.keys() and
          all(np.array_equal(t2[k], t[k]) for k in t), "a skipping run resumed equals the uninterrupted one, bit for bit")

# ---- a failed write (the file size limit stands in for a full disk) ----
good = f"{w}/disk.ckpt"
r = run("--steps", "2", "--save", f"{w}/disk.safetensors", "--checkpoint", good)
before = open(good, "rb").read()
limit = len(before) // 2


def small_disk():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


r = subprocess.run(base + ["--steps", "4", "--resume", good, "--save", f"{w}/disk.safetensors", "--checkpoint", good],
                   capture_output=True, text=True, preexec_fn=small_disk)
msg = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
check(r.returncode == 1 and "disk.ckpt" in msg and "write error" in msg,
      f"a write that fails: an error naming the checkpoint: {msg}")
check(os.path.exists(good) and open(good, "rb").read() == before and not os.path.exists(good + ".tmp"),
      "the last good checkpoint survives unchanged, no temporary file is left")

finish()
