#!/usr/bin/env python3
"""The command-line programs on good and bad input.

  check_cli.py --extract BIN --train BIN --workdir DIR

Bad flags exit 2 with the usage; bad files (missing, truncated, wrong shape, NaN, too short)
exit 1 with one line naming the file and the problem; training resumes bit for bit from a
checkpoint. Exit 0 when every check passes, 1 otherwise, 77 (skipped) without numpy.
"""
import argparse
import os
import subprocess
import sys

try:
    import numpy as np
except ImportError as e:
    print(f"SKIPPED: needs python3-numpy ({e})")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from safetensors_np import read_safetensors  # noqa: E402

RESULTS = []


def soundnet5_steps(samples):
    """Output steps of SoundNet-5 by PyTorch's shape rules (conv: (n + 2p - k) // s + 1; floor pools)."""
    n = samples
    for k, s, p, pool in ((64, 2, 32, 8), (32, 2, 16, 8), (16, 2, 8, 8), (8, 2, 4, None), (16, 12, 4, None)):
        n = (n + 2 * p - k) // s + 1
        if pool:
            n //= pool
    return n


def check(name, ok, detail=""):
    RESULTS.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}  {name}{': ' + detail if detail else ''}", flush=True)


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout, p.stderr


def expect(name, cmd, code, *parts):
    rc, out, err = run(cmd)
    ok = rc == code and all(part in err for part in parts)
    check(name, ok, f"exit {rc}, stderr: {err.strip().splitlines()[0] if err.strip() else '(empty)'}")
    return out


def check_predict(a, weights, path, g):
    """soundnet-predict against numpy: softmax of extract's logits, mean over steps, top-k, names."""
    import json
    long_wave = (80 * np.sin(np.arange(200000) * 0.02) + 10 * g.standard_normal(200000)).astype(np.float32)
    np.save(path("long.npy"), long_wave)
    steps = soundnet5_steps(len(long_wave))
    rc, out, err = run([a.predict, "--arch", "soundnet5", "--weights", weights, "--top", "4", "--json",
                        path("long.npy"), path("absent.npy")])
    try:
        doc = json.loads(out)
    except json.JSONDecodeError:
        doc = []
    check("predict: JSON for the good file, one error line for the missing one, exit 1",
          rc == 1 and len(doc) == 1 and "absent.npy: cannot open" in err and "1 of 2 files failed" in err, err.strip())
    if not doc:
        return
    names = {"objects": [line.split(" ", 1)[1] for line in open(os.path.join(a.labels, "categories_imagenet.txt"))
                         .read().splitlines() if line],
             "scenes": [line[3:] for line in open(os.path.join(a.labels, "categories_places2_soundnet401.txt"))
                        .read().splitlines() if line]}
    ok, worst = len(doc[0]["steps"]) == steps, 0.0
    for head in ("objects", "scenes"):
        run([a.extract, "--arch", "soundnet5", "--weights", weights, "--input-npy", path("long.npy"), "--layer",
             f"conv5_{head}", "--out", path(f"logits-{head}.npy")])
        z = np.load(path(f"logits-{head}.npy")).astype(np.float64)  # (classes, steps)
        p = np.exp(z - z.max(0)) / np.exp(z - z.max(0)).sum(0)
        for t, step in enumerate(doc[0]["steps"]):
            want = np.argsort(-p[:, t])[:4]
            got = [c["index"] for c in step[head]]
            ok = ok and got == list(want) and all(c["name"] == names[head][c["index"]] for c in step[head])
            worst = max([worst] + [abs(c["p"] - p[c["index"], t]) for c in step[head]])
        clip = p.mean(1)
        ok = ok and [c["index"] for c in doc[0]["clip"][head]] == list(np.argsort(-clip)[:4])
        worst = max([worst] + [abs(c["p"] - clip[c["index"]]) for c in doc[0]["clip"][head]])
    check(f"predict: per-step and clip top-4 = softmax of the logits ({steps} steps), names from the labels",
          ok and worst < 1e-6, f"largest probability difference {worst:.2g}")
    bad = path("bad-labels.txt")
    open(bad, "w").write("one\ntwo\n")
    expect("predict: a label file of the wrong length", [a.predict, "--arch", "soundnet5", "--weights", weights,
                                                         "--labels-scenes", bad, path("long.npy")], 1,
           "bad-labels.txt: has 2 categories; the network has 401")
    expect("predict: --top 0", [a.predict, "--arch", "soundnet5", "--weights", weights, "--top", "0", path("long.npy")],
           2, "--top: must be at least 1, got 0")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--extract", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--predict", required=True)
    p.add_argument("--labels", required=True, help="the bundled label folder")
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    w = a.workdir
    os.makedirs(w, exist_ok=True)
    path = lambda name: os.path.join(w, name)  # noqa: E731
    g = np.random.default_rng(0)

    # A SoundNet-5 weight file from the training program itself (0 steps: the seeded init).
    weights = path("init.safetensors")
    manifest0 = path("empty-run.csv")
    wave = (100 * np.sin(np.arange(80000) * 0.05) + 10 * g.standard_normal(80000)).astype(np.float32)
    np.save(path("wave.npy"), wave)
    steps = soundnet5_steps(len(wave))
    rc, _, err = run([a.extract, "--arch", "soundnet5", "--weights", path("none"), "--input-npy", path("wave.npy"),
                      "--layer", "conv5_objects", "--out", path("x.npy")])
    check("extract: a missing weights file is named", rc == 1 and "none: cannot open" in err, err.strip())

    def targets(name, steps, classes):
        t = g.random((steps, classes)).astype(np.float32)
        np.save(path(name), t / t.sum(1, keepdims=True))

    with open(manifest0, "w") as f:
        f.write("audio,objects,scenes\nwave.npy,o.npy,s.npy\n")
    targets("o.npy", steps, 1000)
    targets("s.npy", steps, 401)
    rc, out, err = run([a.train, "--arch", "soundnet5", "--manifest", manifest0, "--batch-size", "1", "--steps", "0",
                        "--save", weights])
    check("train: 0 steps writes the seeded initial weights", rc == 0 and os.path.exists(weights), err.strip())
    rc, _, _ = run([a.extract, "--arch", "soundnet5", "--weights", weights, "--input-npy", path("wave.npy"),
                    "--layer", "conv5_objects", "--out", path("x.npy")])
    shape = np.load(path("x.npy")).shape if rc == 0 else None
    check("extract: one layer, (C, T) float32", rc == 0 and shape == (1000, steps)
          and np.load(path("x.npy")).dtype == np.float32, f"shape {shape}")
    rc, _, _ = run([a.extract, "--arch", "soundnet5", "--weights", weights, "--input-npy", path("wave.npy"),
                    "--all-layers", "--out", path("layers")])
    check("extract: --all-layers writes one file per read-out",
          rc == 0 and len(os.listdir(path("layers"))) == 17 and np.load(path("layers/pool3.npy")).shape[0] == 128)

    # ---- --device: cpu by name is the default; cuda computes the same features on a GPU, and
    # elsewhere names why it cannot (no GPU: exit 1; a build without the CUDA device: exit 2) ----
    one = [a.extract, "--arch", "soundnet5", "--weights", weights, "--input-npy", path("wave.npy"), "--layer", "pool3"]
    rc, _, err = run(one + ["--device", "cpu", "--out", path("cpu.npy")])
    rc0, _, _ = run(one + ["--out", path("default.npy")])
    check("extract: --device cpu equals the default", rc == 0 and rc0 == 0
          and np.array_equal(np.load(path("cpu.npy")), np.load(path("default.npy"))), err.strip())
    rc, _, err = run(one + ["--device", "cuda", "--out", path("cuda.npy")])
    if rc == 0:
        want, got = np.load(path("cpu.npy")).astype(np.float64), np.load(path("cuda.npy")).astype(np.float64)
        rel = np.linalg.norm(got - want) / np.linalg.norm(want)
        check(f"extract: --device cuda on this GPU gives the CPU's features (relative L2 {rel:.1e})", rel < 1e-4)
    else:
        no_gpu = rc == 1 and "--device cuda: no" in err and "use --device cpu" in err
        not_built = rc == 2 and "built without soundnet's CUDA device" in err
        check("extract: --device cuda without a GPU (or without the CUDA device) is a clear error, no CPU fallback",
              (no_gpu or not_built) and not os.path.exists(path("cuda.npy")), err.strip())
    expect("extract: bad --device", one + ["--device", "gpu", "--out", path("z.npy")], 2, "--device", "gpu")
    # --math sets a GPU's matrix products: refused on the CPU, unknown values refused
    for stale in ("math.npy", "math.safetensors"):
        if os.path.exists(path(stale)):
            os.remove(path(stale))
    expect("extract: --math tf32 on the CPU", one + ["--math", "tf32", "--out", path("math.npy")], 2,
           "--math tf32 sets a GPU's matrix products", "needs --device cuda")
    expect("extract: bad --math", one + ["--math", "fp8", "--out", path("math.npy")], 2, "--math", "fp8")
    expect("train: --math bf16 on the CPU", [a.train, "--arch", "soundnet5", "--manifest", manifest0, "--steps", "0",
                                             "--math", "bf16", "--save", path("math.safetensors")], 2, "needs --device cuda")
    check("--math refused: nothing written", not os.path.exists(path("math.npy")) and not os.path.exists(path("math.safetensors")))

    # ---- extract: bad flags and bad files ----
    base = [a.extract, "--arch", "soundnet5", "--weights", weights, "--out", path("y.npy")]
    expect("extract: no arguments", [a.extract], 2, "--arch is required", "Usage:")
    expect("extract: unknown option", base + ["--input-npy", path("wave.npy"), "--layer", "pool1", "--bogus"], 2,
           "not expected: --bogus")
    expect("extract: --layer and --all-layers", base + ["--input-npy", path("wave.npy"), "--layer", "pool1",
                                                        "--all-layers"], 2, "exactly one of")
    expect("extract: unknown layer", base + ["--input-npy", path("wave.npy"), "--layer", "pool5"], 2,
           "unknown layer 'pool5' for soundnet5")
    expect("extract: bad --arch", [a.extract, "--arch", "soundnet9", "--weights", weights, "--input-npy",
                                   path("wave.npy"), "--layer", "pool1", "--out", path("y.npy")], 2, "--arch must be")
    expect("extract: bad --threads", base + ["--input-npy", path("wave.npy"), "--layer", "pool1", "--threads", "two"],
           2, "--threads: needs an integer, got 'two'")
    expect("extract: missing input", base + ["--input-npy", path("absent.npy"), "--layer", "pool1"], 1,
           "absent.npy: cannot open")
    raw = open(path("wave.npy"), "rb").read()
    open(path("cut.npy"), "wb").write(raw[: len(raw) // 2])
    expect("extract: truncated input", base + ["--input-npy", path("cut.npy"), "--layer", "pool1"], 1,
           "cut.npy: truncated")
    np.save(path("short.npy"), wave[:50000])
    expect("extract: too-short input", base + ["--input-npy", path("short.npy"), "--layer", "pool1"], 1,
           "short.npy: input of 50000 samples is too short for soundnet5: it needs at least 56798 samples")
    bad = wave.copy()
    bad[777] = np.nan
    np.save(path("nan.npy"), bad)
    expect("extract: NaN in input", base + ["--input-npy", path("nan.npy"), "--layer", "pool1"], 1,
           "nan.npy: input has a non-finite value", "sample 777")
    np.save(path("stereo.npy"), np.stack([wave, wave]))
    expect("extract: two-channel array", base + ["--input-npy", path("stereo.npy"), "--layer", "pool1"], 1,
           "stereo.npy: a waveform must have shape (samples,) or (1, samples); got (2, 80000)")
    np.save(path("ints.npy"), (wave * 10).astype(np.int16))
    expect("extract: integer input", base + ["--input-npy", path("ints.npy"), "--layer", "pool1"], 1,
           "ints.npy: dtype '<i2' is not supported")
    open(path("cut.safetensors"), "wb").write(open(weights, "rb").read()[:5000])
    expect("extract: truncated weights", [a.extract, "--arch", "soundnet5", "--weights", path("cut.safetensors"),
                                          "--input-npy", path("wave.npy"), "--layer", "pool1", "--out", path("y.npy")],
           1, "cut.safetensors: truncated")
    expect("extract: weights of the other network", [a.extract, "--arch", "soundnet8", "--weights", weights,
                                                     "--input-npy", path("wave.npy"), "--layer", "pool1", "--out",
                                                     path("y.npy")], 1, "weights are for soundnet5")

    # ---- train: a small data set of 3 clips ----
    rows = ["audio,objects,scenes"]
    for i in range(3):
        np.save(path(f"clip{i}.npy"), (80 * np.sin(np.arange(80000) * (0.01 + 0.01 * i))
                                      + 5 * g.standard_normal(80000)).astype(np.float32))
        targets(f"clip{i}-o.npy", steps, 1000)
        targets(f"clip{i}-s.npy", steps, 401)
        rows.append(f"clip{i}.npy,clip{i}-o.npy,clip{i}-s.npy")
    manifest = path("train.csv")
    open(manifest, "w").write("\n".join(rows) + "\n")
    common = [a.train, "--arch", "soundnet5", "--init", weights, "--manifest", manifest, "--batch-size", "2",
              "--seed", "5", "--threads", "2"]
    rc, out, err = run(common + ["--steps", "4", "--save", path("straight.safetensors"),
                                 "--dump-gradients", path("grads.safetensors")])
    losses = [float(line.split("loss")[1]) for line in out.splitlines() if "loss" in line]
    check("train: 4 shuffled steps print a finite loss each", rc == 0 and len(losses) == 4
          and all(np.isfinite(losses)), err.strip() or str(losses))
    grads, meta = read_safetensors(path("grads.safetensors")) if rc == 0 else ({}, {})
    check("train: --dump-gradients writes every trainable tensor", len(grads) == 4 * 4 + 4
          and "bn1.running_mean" not in grads and meta.get("content") == "gradients")
    resume = [a.train, "--arch", "soundnet5", "--manifest", manifest, "--batch-size", "2", "--seed", "5",
              "--threads", "2"]
    rc1, _, err1 = run(common + ["--steps", "2", "--save", path("half.safetensors"), "--checkpoint",
                                 path("ckpt.safetensors")])
    rc2, _, err2 = run(resume + ["--steps", "4", "--resume", path("ckpt.safetensors"), "--save",
                                 path("resumed.safetensors")])
    same = False
    if rc1 == 0 and rc2 == 0:
        x, _ = read_safetensors(path("straight.safetensors"))
        y, _ = read_safetensors(path("resumed.safetensors"))
        same = x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
    check("train: 2 steps + checkpoint + resume to 4 equals 4 steps bit for bit", same, (err1 + err2).strip())
    expect("train: resume with another batch size", resume[:6] + ["3"] + resume[7:] + [
        "--steps", "4", "--resume", path("ckpt.safetensors"), "--save", path("r.safetensors")], 2,
        "--batch-size (batch_size = 3) contradicts the checkpoint", "written with batch_size = 2")
    # Resume with another thread count and without the options: they come from the checkpoint,
    # and the run continues bit for bit (the reductions do not depend on the thread count).
    bare = [a.train, "--arch", "soundnet5", "--manifest", manifest]
    rc3, _, err3 = run(bare + ["--threads", "1", "--steps", "4", "--resume", path("ckpt.safetensors"), "--save",
                               path("resumed1.safetensors")])
    same = False
    if rc1 == 0 and rc3 == 0:
        x, _ = read_safetensors(path("straight.safetensors"))
        y, _ = read_safetensors(path("resumed1.safetensors"))
        same = x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
    check("train: resume with --threads 1 (checkpoint written with 2) and the options from the checkpoint "
          "equals 4 straight steps bit for bit", same, err3.strip())
    expect("train: a flag that contradicts the checkpoint", bare + ["--lr", "0.01", "--steps", "4", "--resume",
                                                                    path("ckpt.safetensors"), "--save",
                                                                    path("r.safetensors")], 2,
           "--lr (adam_lr = 0.01", "contradicts the checkpoint", "written with adam_lr = 0.001")
    expect("train: the same value as the checkpoint's is accepted", bare + [
        "--lr", "1e-3", "--seed", "5", "--steps", "2", "--resume", path("ckpt.safetensors"), "--save",
        path("r.safetensors")], 0)
    changed = path("changed.csv")
    open(changed, "w").write("\n".join(rows[:3]) + "\n")
    expect("train: resume on another manifest", [a.train, "--arch", "soundnet5", "--manifest", changed, "--steps",
                                                 "4", "--resume", path("ckpt.safetensors"), "--save",
                                                 path("r.safetensors")], 1,
           "changed.csv: has changed since the checkpoint")
    expect("train: --checkpoint-every without --checkpoint", common + ["--steps", "2", "--checkpoint-every", "1",
                                                                       "--save", path("z.safetensors")], 2,
           "--checkpoint-every requires --checkpoint")
    rc, out, err = run(common + ["--steps", "2", "--crop-samples", "60000", "--target-hop-samples", "5000",
                                 "--save", path("crop.safetensors")])
    check("train: random crops", rc == 0 and out.count("loss") == 2, err.strip())

    expect("train: missing manifest", [a.train, "--arch", "soundnet5", "--manifest", path("nope.csv"), "--save",
                                       path("z.safetensors")], 1, "nope.csv: cannot open manifest")
    open(path("header.csv"), "w").write("wav,obj,scn\n")
    expect("train: bad manifest header", [a.train, "--arch", "soundnet5", "--manifest", path("header.csv"), "--save",
                                          path("z.safetensors")], 1, "header must be 'audio,objects,scenes'")
    targets("bad-o.npy", steps, 365)
    open(path("bad.csv"), "w").write("audio,objects,scenes\nclip0.npy,clip0-o.npy,clip0-s.npy\n"
                                     "gone.npy,clip1-o.npy,clip1-s.npy\nclip2.npy,bad-o.npy,clip2-s.npy\n"
                                     "clip1.npy,clip1-o.npy\n")
    expect("train: every bad row is reported", [a.train, "--arch", "soundnet5", "--manifest", path("bad.csv"),
                                                "--save", path("z.safetensors")], 1, "3 bad row(s)",
           "gone.npy: cannot open", f"bad-o.npy: object targets must have shape (steps, 1000); got ({steps}, 365)",
           "row 5 has 2 fields")
    os.makedirs(path("sub"), exist_ok=True)
    open(path("sub/outside.csv"), "w").write("audio,objects,scenes\n../clip0.npy,../clip0-o.npy,../clip0-s.npy\n")
    expect("train: a manifest naming files outside its folder", [a.train, "--arch", "soundnet5", "--manifest",
                                                                 path("sub/outside.csv"), "--steps", "0", "--save",
                                                                 path("z.safetensors")], 1,
           "names '../clip0.npy', outside its folder")
    expect("train: ... allowed by --allow-outside-paths", [a.train, "--arch", "soundnet5", "--manifest",
                                                           path("sub/outside.csv"), "--steps", "0",
                                                           "--allow-outside-paths", "--save", path("z.safetensors")], 0)
    np.save(path("long.npy"), np.zeros(90000, np.float32))
    open(path("mixed.csv"), "w").write("audio,objects,scenes\nclip0.npy,clip0-o.npy,clip0-s.npy\n"
                                       "long.npy,clip1-o.npy,clip1-s.npy\n")
    expect("train: clips of different lengths without cropping", [a.train, "--arch", "soundnet5", "--manifest",
                                                                   path("mixed.csv"), "--save", path("z.safetensors")],
           1, "clips differ in length")
    expect("train: crop longer than a clip", common + ["--steps", "1", "--crop-samples", "90000", "--save",
                                                       path("z.safetensors")], 1, "shorter than --crop-samples 90000")
    expect("train: bad learning rate", common + ["--steps", "1", "--lr", "-1", "--save", path("z.safetensors")], 1,
           "learning rate must be positive")
    expect("train: --init and --resume together", common + ["--resume", path("ckpt.safetensors"), "--save",
                                                            path("z.safetensors")], 2, "--init excludes --resume")
    expect("train: float64 with checkpoints", common + ["--precision", "float64", "--checkpoint", path("c.st"),
                                                        "--save", path("z.safetensors")], 2, "checkpoints hold float32")

    check_predict(a, weights, path, g)

    passed = sum(RESULTS)
    print(f"{passed} passed, {len(RESULTS) - passed} failed")
    return 0 if passed == len(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
