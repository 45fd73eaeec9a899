#!/usr/bin/env python3
"""soundnet-evaluate's choice of C by cross-validation, against an independent run of the same
protocol in scikit-learn (its LinearSVC is liblinear's L2-loss dual solver with the bias as a
feature of value 1, one-vs-rest: `-s 1 -B 1`), on the real pretrained SoundNet features of
ESC-50 (../shared/reference/pretrained-esc50-features). For each test fold, each C of the grid
is scored by leave-one-fold-out over the other four folds only; the best is trained on all four
and tested. The two runs shuffle with different random generators, so their figures agree to
within a few clips, not exactly: every inner accuracy within 0.01 (16 of 1,600 clips), the mean
accuracy within 0.01. Exit 77 (skipped) without ../shared or without scikit-learn."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings

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
try:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC
except ImportError:
    print("SKIPPED: scikit-learn (Debian: python3-sklearn), the independent reference, is not installed")
    sys.exit(77)
shutil.rmtree(a.workdir, ignore_errors=True)
os.makedirs(a.workdir)

X = np.load(os.path.join(ref, "X.npy")).astype(np.float64)
y = np.load(os.path.join(ref, "y.npy"))
folds = np.arange(len(y)) // 400 + 1  # rows grouped by fold, 400 each
meta = os.path.join(a.workdir, "meta.csv")
with open(meta, "w") as f:
    f.write("filename,fold,target\n" + "".join(f"clip{i}.wav,{fo},{t}\n" for i, (fo, t) in enumerate(zip(folds, y))))

# ---- soundnet-evaluate ----------------------------------------------------------------------------
out = os.path.join(a.workdir, "cv")
start = time.time()
r = subprocess.run([a.evaluate, "--features", os.path.join(ref, "X.npy"), "--meta", meta, "--out", out],
                   capture_output=True, text=True)
ours_s = time.time() - start
check(r.returncode == 0, "soundnet-evaluate with C cross-validated " + r.stderr[-300:])
res = json.load(open(os.path.join(out, "results.json"))) if r.returncode == 0 else {"folds": [], "c_grid": []}
grid = res["c_grid"]
check(grid == [0.001, 0.01, 0.1, 1, 10], f"the documented grid: {grid}")
check(len(res["folds"]) == 5 and all(len(f.get("c_scores", [])) == len(grid) for f in res["folds"]),
      "results.json: each fold's training-fold accuracy for every C of the grid")

# The trainings run in child processes, --threads at once: the results must not depend on it.
r1 = subprocess.run([a.evaluate, "--features", os.path.join(ref, "X.npy"), "--meta", meta, "--out", out + "-1",
                     "--threads", "1"], capture_output=True, text=True)
same = r1.returncode == 0 and os.path.exists(os.path.join(out, "results.json")) and \
    open(os.path.join(out, "results.json")).read() == open(os.path.join(out + "-1", "results.json")).read()
check(same, f"--threads 1 (one training at a time, in the program's process) gives the same results.json as "
      f"--threads {os.cpu_count()} (trainings in parallel processes) " + r1.stderr[-300:])

# ---- the same protocol in scikit-learn -------------------------------------------------------------
warnings.simplefilter("ignore", ConvergenceWarning)  # liblinear's iteration cap, as in soundnet-evaluate


def scored(train, test, c):
    m = LinearSVC(C=c, loss="squared_hinge", dual=True, tol=0.1, fit_intercept=True, intercept_scaling=1,
                  max_iter=1000, random_state=0).fit(X[train], y[train])
    return int((m.predict(X[test]) == y[test]).sum()), int(test.sum())


start = time.time()
fold_ids = range(1, 6)
inner = {}  # (C, test fold k, inner fold g): (correct, clips), trained on the folds but k and g
for i in fold_ids:
    for j in fold_ids:
        if j > i:
            train = (folds != i) & (folds != j)
            for c in grid:
                inner[c, i, j] = scored(train, folds == j, c)
                inner[c, j, i] = scored(train, folds == i, c)
theirs = []
for k in fold_ids:
    scores = [sum(inner[c, k, g][0] for g in fold_ids if g != k) / sum(inner[c, k, g][1] for g in fold_ids if g != k)
              for c in grid]
    best = grid[int(np.argmax(scores))]  # the first of equals, as soundnet-evaluate
    correct, clips = scored(folds != k, folds == k, best)
    theirs.append({"fold": k, "c": best, "c_scores": scores, "accuracy": correct / clips})
    if len(res["folds"]) == 5:
        ours = res["folds"][k - 1]
        gap = max(abs(u - v) for u, v in zip(ours["c_scores"], scores))
        check(gap <= 0.01, f"fold {k}: training-fold accuracy per C {np.round(ours['c_scores'], 4).tolist()}, "
              f"scikit-learn {np.round(scores, 4).tolist()} (largest gap {gap:.4f})")
        print(f"     fold {k}: C {ours['c']:g} chosen, scikit-learn chose {best:g}; accuracy {ours['accuracy']:.4f}, "
              f"scikit-learn {correct / clips:.4f}")
sk_s = time.time() - start
mean = float(np.mean([t["accuracy"] for t in theirs]))
got = res.get("mean_accuracy", -1)
check(abs(got - mean) <= 0.01 and 0.70 <= got <= 0.76,
      f"mean accuracy {got:.4f}, scikit-learn's nested cross-validation {mean:.4f} (the paper: 0.742)")
print(f"     times: soundnet-evaluate {ours_s:.1f} s, scikit-learn {sk_s:.1f} s")
finish()
