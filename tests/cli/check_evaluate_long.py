#!/usr/bin/env python3
"""Opt-in evaluations on the whole of ESC-10 and ESC-50 (ctest label `long`; configure with
-DSOUNDNET_LONG_TESTS=ON). Each case runs one documented command of docs/results.md and checks
what that page reports of it.

  check_evaluate_long.py --evaluate BIN --shared DIR --workdir DIR --case NAME

Cases:
  esc10_supervised_soundnet8  Table 5's scratch baseline, SoundNet-8, 10 epochs (about 13 minutes
                              on 2 idle cores): every fold at least twice chance (0.1), the mean at
                              least MIN_SUPERVISED
  esc50_supervised_soundnet8  the same on ESC-50 (../shared/data/esc50-16k, band-limited to 8 kHz;
                              about an hour on 2 idle cores): every fold at least three times chance
                              (0.02), the mean at least MIN_SUPERVISED_ESC50
  esc10_supervised_soundnet5  the same for SoundNet-5 (about 25 minutes): every fold at least 0.2,
                              the mean at least MIN_SUPERVISED
  esc50_supervised_soundnet5  SoundNet-5 on ESC-50 (16 kHz; about 80 minutes): every fold at
                              least 0.06, the mean at least MIN_SUPERVISED_ESC50_SN5
  esc10_random_layers         random SoundNet-8 at conv5, pool5, conv6 and conv7, C = 0.01 (the
                              machinery of Table 6; about 2 minutes): conv5, pool5 and conv6 above
                              chance. conv7 is reported, not checked: random weights shrink the
                              activations about threefold a layer (mean |conv7| 1e-4), too small
                              for an SVM held to C = 0.01, which then predicts one class (0.1)
Exit 77 (skipped) without ../shared.
"""
import argparse
import json
import os
import subprocess
import sys

# docs/results.md: 0.585 measured with this command (AVX-512 kernels); another instruction set
# rounds differently and trains along another path, hence the margin. Chance is 0.1, the paper's
# figure (its own training schedule) 0.755.
MIN_SUPERVISED = 0.50
# docs/results.md: 0.1525 measured on ESC-50 (16 kHz) with its command; the paper 0.511.
MIN_SUPERVISED_ESC50 = 0.12
# docs/results.md: SoundNet-5 0.605 on ESC-10 (held to MIN_SUPERVISED as SoundNet-8; the paper
# 0.823) and 0.2740 on ESC-50 (16 kHz; the paper 0.650), folds 0.2225 to 0.3125.
MIN_SUPERVISED_ESC50_SN5 = 0.22
CASES = ["esc10_supervised_soundnet8", "esc50_supervised_soundnet8", "esc10_supervised_soundnet5",
         "esc50_supervised_soundnet5", "esc10_random_layers"]


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--evaluate", required=True)
    a.add_argument("--shared", required=True)
    a.add_argument("--workdir", required=True)
    a.add_argument("--case", required=True, choices=CASES)
    args = a.parse_args()
    fifty = args.case.startswith("esc50")
    esc = os.path.join(args.shared, "data", "esc50-16k" if fifty else "esc10")
    if not os.path.isdir(esc):
        print(f"SKIPPED: {esc} is not there (the shared reference material is absent)")
        return 77
    meta = os.path.join(esc, "meta", "esc50.csv" if fifty else "esc10.csv")
    audio = os.path.join(esc, "audio-16k-ogg" if fifty else "audio-22k-mp3")
    out = os.path.join(args.workdir, args.case)
    failures = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what, flush=True)
        if not ok:
            failures.append(what)

    if "_supervised_" in args.case:
        arch = args.case.split("_")[-1]
        cmd = [args.evaluate, "--supervised", "--arch", arch, "--audio", audio, "--meta", meta,
               "--epochs", "10", "--batch", "16", "--seed", "1", "--out", out]
        print(" ".join(cmd), flush=True)
        r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        print(r.stdout)
        check(r.returncode == 0, f"exit status {r.returncode}")
        if r.returncode == 0:
            res = json.load(open(os.path.join(out, "results.json")))
            accs = [f["accuracy"] for f in res["folds"]]
            clips, floor, least, paper = {
                "esc10_supervised_soundnet8": (400, 0.2, MIN_SUPERVISED, 0.755),
                "esc50_supervised_soundnet8": (2000, 0.06, MIN_SUPERVISED_ESC50, 0.511),
                "esc10_supervised_soundnet5": (400, 0.2, MIN_SUPERVISED, 0.823),
                "esc50_supervised_soundnet5": (2000, 0.06, MIN_SUPERVISED_ESC50_SN5, 0.650)}[args.case]
            check(len(accs) == 5 and sum(f["clips"] for f in res["folds"]) == clips, f"5 folds, {clips} test clips")
            check(min(accs) >= floor, f"every fold at least {floor}: {accs}")
            check(res["mean_accuracy"] >= least, f"mean accuracy {res['mean_accuracy']:.4f} >= {least} (paper: {paper})")
    else:
        layers = ["conv5", "pool5", "conv6", "conv7"]
        cmd = [args.evaluate, "--arch", "soundnet8", "--weights", "random", "--audio", audio, "--meta", meta,
               "--layers", ",".join(layers), "--c", "0.01", "--cache", os.path.join(args.workdir, "cache"),
               "--out", out]
        print(" ".join(cmd), flush=True)
        r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        print(r.stdout)
        check(r.returncode == 0, f"exit status {r.returncode}")
        for layer in layers if r.returncode == 0 else []:
            acc = json.load(open(os.path.join(out, layer, "results.json")))["mean_accuracy"]
            if layer == "conv7":
                print(f"     conv7: {acc:.4f} (not checked: see the docstring)")
            else:
                check(acc > 0.15, f"{layer}: {acc:.4f} above chance (0.1)")
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
