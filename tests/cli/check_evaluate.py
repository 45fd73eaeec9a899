#!/usr/bin/env python3
"""soundnet-evaluate on the real pretrained SoundNet features of ESC-50
(../shared/reference/pretrained-esc50-features, time-averaged pool5 of the authors' model): at
fixed C it reproduces the independent liblinear figures of ../shared/README.md section 4 within a
point, and with C cross-validated on the training folds it lands in 0.70-0.76. Bad input gives a
clear error naming the row or file. Exit 77 (skipped) without ../shared."""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, finish  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--evaluate", required=True)
p.add_argument("--shared", required=True)
p.add_argument("--workdir", required=True)
a = p.parse_args()
ref = os.path.join(a.shared, "reference", "pretrained-esc50-features")
if not os.path.isdir(ref):
    print(f"SKIPPED: {ref} (the shared reference data) is absent")
    sys.exit(77)
shutil.rmtree(a.workdir, ignore_errors=True)
os.makedirs(a.workdir)


X = np.load(os.path.join(ref, "X.npy"))
y = np.load(os.path.join(ref, "y.npy"))
meta = os.path.join(a.workdir, "meta.csv")


def write_meta(path, folds, targets):
    with open(path, "w") as f:
        f.write("filename,fold,target,category\n")
        for i, (fo, t) in enumerate(zip(folds, targets)):
            f.write(f"clip{i}.wav,{fo},{t},class{t}\n")


write_meta(meta, np.arange(len(y)) // 400 + 1, y)  # rows grouped by fold, 400 each
features = os.path.join(ref, "X.npy")


def run(*args):
    return subprocess.run([a.evaluate] + list(args), capture_output=True, text=True)


# ---- the published figures (liblinear -s 1 -B 1, one-vs-rest, leave one fold out) ------------
for c, published in [(0.01, 0.664), (0.1, 0.742), (1, 0.744)]:
    r = run("--features", features, "--meta", meta, "--c", str(c), "--folds", "5")
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    got = float(last.split(":")[1]) if last.startswith("mean accuracy: ") else -1
    check(r.returncode == 0 and abs(got - published) <= 0.01, f"C = {c}: {got:.4f} against the published {published}")
    # the folds' trainings one at a time, and three at once in child processes: the same figures
    lines = [subprocess.run([a.evaluate, "--features", features, "--meta", meta, "--c", str(c), "--threads", t],
                            capture_output=True, text=True).stdout for t in ("1", "3")]
    check(lines[0] == lines[1] == r.stdout and lines[0], f"C = {c}: --threads 1 and 3 print the same per-fold results")

out = os.path.join(a.workdir, "cv")
r = run("--features", features, "--meta", meta, "--out", out)
last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
got = float(last.split(":")[1]) if last.startswith("mean accuracy: ") else -1
check(r.returncode == 0 and 0.70 <= got <= 0.76, f"C cross-validated on the training folds: {got:.4f} in 0.70-0.76")
res = json.load(open(os.path.join(out, "results.json")))
check(len(res["folds"]) == 5 and res["c"] == "cross-validated" and abs(np.mean([f["accuracy"] for f in res["folds"]]) - got) < 1e-4,
      "results.json: five folds whose mean is the printed accuracy")
conf = np.loadtxt(os.path.join(out, "confusion.csv"), delimiter=",", skiprows=1)[:, 1:]
check(conf.shape == (50, 50) and conf.sum() == 2000 and abs(np.trace(conf) / 2000 - got) < 0.01,
      "confusion.csv: 50 x 50, every clip once, its diagonal the accuracy")
check(os.path.exists(os.path.join(out, "confusion.png")) or shutil.which("gnuplot") is None, "confusion.png drawn")

# ---- bad input: clear errors naming the row or file -------------------------------------------
small = os.path.join(a.workdir, "small.npy")
np.save(small, X[::20].astype(np.float32))  # 100 clips, 20 per fold
ys, fs = y[::20], (np.arange(len(y)) // 400 + 1)[::20]
smeta = os.path.join(a.workdir, "small.csv")
write_meta(smeta, fs, ys)
nan = X[::20].astype(np.float32).copy()
nan[7, 3] = np.nan
np.save(os.path.join(a.workdir, "nan.npy"), nan)
r = run("--features", os.path.join(a.workdir, "nan.npy"), "--meta", smeta, "--c", "0.1")
check(r.returncode == 1 and "clip7.wav" in r.stderr and "not finite" in r.stderr, "NaN features: the clip and row named")
r = run("--features", small, "--meta", smeta, "--c", "0.1", "--folds", "6")
check(r.returncode == 1 and "fold 6 has no test clips" in r.stderr, "a fold with no test clips")
lone = os.path.join(a.workdir, "lone.csv")
ys2 = ys.copy()
ys2[0] = 77  # only in fold 1
write_meta(lone, fs, ys2)
r = run("--features", small, "--meta", lone, "--c", "0.1")
check(r.returncode == 1 and "class 77 of clip0.wav" in r.stderr and "no training clip" in r.stderr,
      "a class absent from training: the clip named")
short = os.path.join(a.workdir, "short.csv")
with open(smeta) as f:
    lines = f.readlines()
with open(short, "w") as f:
    f.writelines(lines[:-1])
r = run("--features", small, "--meta", short, "--c", "0.1")
check(r.returncode == 1 and "has 100 rows" in r.stderr and "99 clips" in r.stderr, "rows and metadata disagree")
bad = os.path.join(a.workdir, "bad.csv")
with open(bad, "w") as f:
    f.write("filename,fold\nx.wav,1\n")
r = run("--features", small, "--meta", bad)
check(r.returncode == 1 and "no 'target' column" in r.stderr, "a metadata CSV without targets")
with open(bad, "w") as f:
    f.write("filename,fold,target\nx.wav,one,3\n")
r = run("--features", small, "--meta", bad)
check(r.returncode == 1 and "row 2 (x.wav)" in r.stderr, "a non-integer fold: the row named")
r = run("--features", os.path.join(a.workdir, "missing.npy"), "--meta", smeta)
check(r.returncode == 1 and "missing.npy" in r.stderr, "a missing features file")
r = run("--features", small, "--meta", smeta, "--c", "-1")
check(r.returncode == 2, "a bad --c: usage error")

# ---- the authors' protocol on audio: 20 ESC-10 clips, random weights, windows, the cache -------
esc = os.path.join(a.shared, "data", "esc10")
rows = [l.rstrip("\n").split(",") for l in open(os.path.join(esc, "meta", "esc10.csv"))][1:]
pick = []
for fold in range(1, 6):
    for target in ("0", "1"):  # dog, rooster: two clips each per fold
        pick += [r for r in rows if r[1] == str(fold) and r[2] == target][:2]
ameta = os.path.join(a.workdir, "audio.csv")
with open(ameta, "w") as f:
    f.write("filename,fold,target\n" + "".join(f"{r[0]},{r[1]},{r[2]}\n" for r in pick))
cache = os.path.join(a.workdir, "cache")
args = ["--arch", "soundnet8", "--weights", "random", "--audio", os.path.join(esc, "audio-22k-mp3"), "--meta", ameta,
        "--layers", "pool5,conv6", "--c", "0.01", "--cache", cache, "--out", os.path.join(a.workdir, "audio")]
r1 = run(*args)
r2 = run(*args)
check(r1.returncode == 0 and "20 extracted, 0 cached" in r1.stderr, "20 clips from their audio " + r1.stderr[-200:])
check(r2.returncode == 0 and "0 extracted, 20 cached" in r2.stderr, "a second run reads the cached features")
def accuracies(out):  # "layer pool5: mean accuracy 0.5000 (SVM 0.0 s)": the figure, not the time
    return [l.split(" (SVM")[0] for l in out.splitlines() if "mean accuracy" in l]
lines1 = accuracies(r1.stdout)
check(lines1 == accuracies(r2.stdout) and len(lines1) == 3,
      "cached features give the same accuracies " + repr((lines1, accuracies(r2.stdout))))
check("windows of 3 steps (500 rows)" in r1.stdout, "pool5: 27 steps per 10 s, 1 s windows of 3 steps at every position")
check(r1.stdout.strip().splitlines()[-1].startswith("mean accuracy: "), "the last line is the mean accuracy")
feat = np.load(os.path.join(cache, os.listdir(cache)[0], "pool5", pick[0][0].replace(".wav", ".npy")))
check(feat.shape == (256, 27), f"cached pool5 of a 10 s clip: (256, 27), got {feat.shape}")
# --features DIR: a cache layer folder evaluated alone gives the audio run's figure for that layer
layer_dir = os.path.join(cache, os.listdir(cache)[0], "pool5")
r = run("--features", layer_dir, "--meta", ameta, "--c", "0.01")
pool5 = next((l for l in r1.stdout.splitlines() if l.startswith("layer pool5: mean accuracy")), "")
got = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
check(r.returncode == 0 and pool5 and got == "mean accuracy: " + pool5.split()[4]
      and "windows of 3 steps (500 rows)" in r.stdout, f"--features DIR (pool5's cache folder): {got} as from audio ({pool5})")
partial = os.path.join(a.workdir, "features-dir")
shutil.rmtree(partial, ignore_errors=True)
shutil.copytree(layer_dir, partial)
os.remove(os.path.join(partial, pick[3][0].replace(".wav", ".npy")))
r = run("--features", partial, "--meta", ameta, "--c", "0.01")
check(r.returncode == 1 and f"row 5 ({pick[3][0]}): no features" in r.stderr, "--features DIR without a clip's file: the row named")
np.save(os.path.join(partial, pick[3][0].replace(".wav", ".npy")), np.zeros((256, 20), np.float32))
r = run("--features", partial, "--meta", ameta, "--c", "0.01")
check(r.returncode == 1 and pick[3][0].replace(".wav", ".npy") in r.stderr and "has shape (256, 20)" in r.stderr,
      "--features DIR with a clip of another length: the file named")
bmeta = os.path.join(a.workdir, "audio-missing.csv")
with open(bmeta, "w") as f:
    f.write("filename,fold,target\n" + "".join(f"{r[0]},{r[1]},{r[2]}\n" for r in pick) + "9-999-A-0.wav,5,0\n")
r = run(*(args[:7] + [bmeta, "--layers", "pool5"]))
check(r.returncode == 1 and "row 22 (9-999-A-0.wav)" in r.stderr, "a row whose audio is missing: the row named")
r = run(*(args[:7] + [ameta, "--layers", "pool9"]))
check(r.returncode == 2 and "unknown layer 'pool9'" in r.stderr, "an unknown layer: usage error with the known ones")

# ---- --supervised: the scratch baseline's machinery on the same 20 clips (one epoch: its figures
# on the whole of ESC-10 and ESC-50 are the opt-in tests labelled long) ---------------------------
sup = ["--supervised", "--arch", "soundnet8", "--audio", os.path.join(esc, "audio-22k-mp3"), "--epochs", "1",
       "--batch", "8", "--seed", "3"]
out_sup = os.path.join(a.workdir, "supervised")
r = run(*sup, "--meta", ameta, "--out", out_sup)
res = json.load(open(os.path.join(out_sup, "results.json"))) if r.returncode == 0 else {}
check(r.returncode == 0 and r.stdout.strip().splitlines()[-1].startswith("mean accuracy: ")
      and len(res.get("folds", [])) == 5 and all(f["clips"] == 4 for f in res["folds"])
      and all(p["train_clips"] == 16 and p["steps"] == 2 for p in res["per_fold"])
      and np.array(res["confusion"]).sum() == 20, "--supervised: 5 folds, each trained on the other 16 clips, 20 tested "
      + (r.stderr[-300:] if r.returncode else ""))
r2 = run(*sup, "--meta", ameta)
check(r2.returncode == 0 and [l for l in r.stdout.splitlines() if l.startswith("fold")] and
      [l.split(" (")[0] for l in r.stdout.splitlines() if l.startswith("fold")] ==
      [l.split(" (")[0] for l in r2.stdout.splitlines() if l.startswith("fold")], "--supervised: the same seed, the same results")
r = run(*sup, "--meta", bmeta)
check(r.returncode == 1 and "row 22 (9-999-A-0.wav)" in r.stderr, "--supervised: a row whose audio is missing: the row named")
lone = os.path.join(a.workdir, "lone-class.csv")
with open(lone, "w") as f:
    f.write("filename,fold,target\n" + "".join(f"{r_[0]},{r_[1]},{r_[2]}\n" for r_ in pick)
            + f"{rows[[r_[2] for r_ in rows].index('38')][0]},2,38\n")
r = run(*sup, "--meta", lone)
check(r.returncode == 1 and "class 38" in r.stderr and "no training clip" in r.stderr,
      "--supervised: a class only in the test fold is named")
r = run("--supervised", "--weights", "random", "--arch", "soundnet8", "--audio", esc, "--meta", ameta)
check(r.returncode == 2, "--supervised with --weights: usage error")

finish()
