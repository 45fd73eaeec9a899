#!/usr/bin/env python3
"""soundnet-train --dataset on a store written here by numpy alone (the layout of
docs/dataset.md, so the format is tested from the other side too):
  - a run interrupted by a checkpoint and resumed (with another --threads) equals the
    uninterrupted run bit for bit, weights and Adam state;
  - the targets follow the frames: a video whose frames all say class k trains the head towards k;
  - --loss l2 trains; one teacher gives a one-head network; bad flags and a changed store are refused."""
import argparse
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from store_writer import make_video, write_store  # noqa: E402
from checks import check, finish, tensors  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--train", required=True)
p.add_argument("--workdir", required=True)
p.add_argument("--plot-filters", help="apps/plot_filters.py, run on a trained model when matplotlib is there")
a = p.parse_args()
shutil.rmtree(a.workdir, ignore_errors=True)
os.makedirs(a.workdir)


rng = np.random.default_rng(5)


def video(key, seconds, posteriors, freq=None):
    return make_video(rng, key, seconds, posteriors, freq)


two = [("objects", 1000), ("scenes", 365)]
store = os.path.join(a.workdir, "store")
write_store(store, two, [video(f"v{i}.mp4", 6 + 3 * i, [(1000, 10 * i), (365, 7 * i)]) for i in range(5)])


def train(*args, **kw):
    r = subprocess.run([a.train, "--arch", "soundnet8", "--dataset", store, "--crop-seconds", "10", "--batch-size", "2",
                        "--validation-videos", "1", "--validate-every", "2"] + list(args), capture_output=True, text=True, **kw)
    return r


w = a.workdir
r1 = train("--steps", "4", "--save", f"{w}/full.safetensors", "--checkpoint", f"{w}/full.ckpt", "--threads", "2")
check(r1.returncode == 0, "4 steps from the store " + r1.stderr[-300:])
check(r1.stdout.count("validation KL") == 2 and os.path.exists(f"{w}/full.safetensors.log.csv"),
      "validation every 2 steps, logged")
log = open(f"{w}/full.safetensors.log.csv").read().splitlines()
check(log[0] == "step,train_loss,train_baseline_kl,validation_kl,validation_baseline_kl,seconds" and len(log) == 3,
      "the CSV log: a header and one row per validation")
r2 = train("--steps", "2", "--save", f"{w}/half.safetensors", "--checkpoint", f"{w}/half.ckpt", "--threads", "2")
r3 = subprocess.run([a.train, "--arch", "soundnet8", "--dataset", store, "--resume", f"{w}/half.ckpt", "--steps", "4",
                     "--save", f"{w}/resumed.safetensors", "--checkpoint", f"{w}/resumed.ckpt", "--threads", "1"],
                    capture_output=True, text=True)
check(r2.returncode == 0 and r3.returncode == 0, "2 steps, then resumed to 4 with another thread count " + r3.stderr[-300:])
full, _ = tensors(f"{w}/full.ckpt")
resumed, meta = tensors(f"{w}/resumed.ckpt")
same = full.keys() == resumed.keys() and all(np.array_equal(full[k], resumed[k]) for k in full)
check(same, "the resumed run's checkpoint (weights, Adam moments) equals the uninterrupted run's, bit for bit")
check(meta.get("crop_seconds") == "10" and meta.get("validation_videos") == "1" and meta.get("loss") == "kl",
      "the checkpoint records crop, split and loss")
check(r1.stdout.splitlines()[-1].split("loss")[0] and
      [l.split(" (")[0] for l in r1.stdout.splitlines() if l.startswith("step 3/") or l.startswith("step 4/")] ==
      [l.split(" (")[0] for l in r3.stdout.splitlines() if l.startswith("step 3/") or l.startswith("step 4/")],
      "the resumed steps print the same losses")
r = subprocess.run([a.train, "--arch", "soundnet8", "--dataset", store, "--resume", f"{w}/half.ckpt", "--steps", "4",
                    "--save", f"{w}/x.safetensors", "--crop-seconds", "12"], capture_output=True, text=True)
check(r.returncode == 2 and "contradicts the checkpoint" in r.stderr, "a contradicting --crop-seconds on resume: usage error")

# a changed store is refused on resume
shutil.copytree(store, f"{w}/store2")
with open(f"{w}/store2/index.bin", "r+b") as f:
    f.seek(60)
    f.write(b"\x01")
r = subprocess.run([a.train, "--arch", "soundnet8", "--dataset", f"{w}/store2", "--resume", f"{w}/half.ckpt", "--steps", "4",
                    "--save", f"{w}/y.safetensors"], capture_output=True, text=True)
check(r.returncode == 1 and "has changed since the checkpoint" in r.stderr, "a changed store: refused on resume")

# the targets follow the frames: one teacher; the frames of low-pitched videos say class 3, of
# high-pitched ones class 7: the network must hear which (the mean distribution cannot)
one = os.path.join(w, "one")
write_store(one, [("objects", 1000)], [video(f"c{i}.mp4", 11, [(1000, 3 if i % 2 else 7)], 0.02 if i % 2 else 0.3)
                                       for i in range(5)])
r = subprocess.run([a.train, "--arch", "soundnet8", "--dataset", one, "--crop-seconds", "10", "--batch-size", "4",
                    "--validation-videos", "1", "--steps", "40", "--validate-every", "10",
                    "--save", f"{w}/one.safetensors"], capture_output=True, text=True)
check(r.returncode == 0, "one teacher: a one-head network trains " + r.stderr[-300:])
t, _ = tensors(f"{w}/one.safetensors")
check("conv8.weight" in t and "conv8_scenes.weight" not in t, "one head: weights conv8.weight, conv8.bias")
last = [l for l in r.stdout.splitlines() if l.startswith("at step")]
if last:
    nums = [float(x) for x in __import__("re").findall(r"[-+]?\d+\.\d+", last[-1])]
    check(nums[0] < nums[1] / 4 and nums[2] < nums[3] / 2, f"the loss falls well below the baseline: {last[-1]}")
else:
    check(False, "a validation line")

if a.plot_filters:
    try:
        import matplotlib  # noqa: F401
        r = subprocess.run([sys.executable, a.plot_filters, f"{w}/one.safetensors", f"{w}/filters.png"],
                           capture_output=True, text=True)
        check(r.returncode == 0 and os.path.getsize(f"{w}/filters.png") > 10000, "conv1 filters plotted " + r.stderr)
        r = subprocess.run([sys.executable, a.plot_filters, f"{w}/missing.safetensors", f"{w}/f2.png"],
                           capture_output=True, text=True)
        check(r.returncode == 1 and "missing.safetensors" in r.stderr, "plot-filters: a missing file named")
    except ImportError:
        print("SKIPPED (within this test): the filter plot needs python3-matplotlib")

r = subprocess.run([a.train, "--arch", "soundnet8", "--dataset", one, "--crop-seconds", "10", "--batch-size", "2",
                    "--validation-videos", "1", "--steps", "2", "--loss", "l2", "--save", f"{w}/l2.safetensors"],
                   capture_output=True, text=True)
losses = [float(l.split("loss")[1].split("(")[0]) for l in r.stdout.splitlines() if l.startswith("step ")]
check(r.returncode == 0 and len(losses) == 2 and all(0 <= x <= 2 for x in losses), f"--loss l2: {losses}")

for args, what in [(["--crop-seconds", "5"], "too short"), (["--validation-videos", "5"], "leaves no training video"),
                   (["--scenes", "365"], "the heads follow the store"), (["--loss", "l1"], "l1")]:
    r = subprocess.run([a.train, "--arch", "soundnet8", "--dataset", store, "--steps", "1", "--save", f"{w}/z.safetensors"]
                       + args, capture_output=True, text=True)
    check(r.returncode == 2 and what in r.stderr, f"{' '.join(args)}: usage error naming the problem")
r = subprocess.run([a.train, "--arch", "soundnet8", "--dataset", f"{w}/missing", "--steps", "1", "--save", f"{w}/z.safetensors"],
                   capture_output=True, text=True)
check(r.returncode == 1 and "missing" in r.stderr and "not a soundnet dataset" in r.stderr, "a missing store: named")

finish()
