#!/usr/bin/env python3
"""apps/convert_weights.py on the three community formats: known SoundNet-5 weights written
in the TensorFlow port's sound8.npy layout, as a PyTorch port's state dict and as Keras HDF5
come back unchanged; bad files are refused with a message.

  check_convert.py --workdir DIR       (exit 77 without numpy)
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from safetensors_np import read_safetensors  # noqa: E402

CONVERTER = os.path.join(HERE, "..", "..", "apps", "convert_weights.py")
RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}  {name}{': ' + detail if detail else ''}", flush=True)


def known_weights():
    g = np.random.default_rng(11)
    w, cin = {}, 1
    for i, (out, k) in enumerate(((32, 64), (64, 32), (128, 16), (256, 8)), start=1):
        w[f"conv{i}.weight"] = g.standard_normal((out, cin, k)).astype(np.float32)
        w[f"conv{i}.bias"] = g.standard_normal(out).astype(np.float32)
        for n in ("weight", "bias", "running_mean"):
            w[f"bn{i}.{n}"] = g.standard_normal(out).astype(np.float32)
        w[f"bn{i}.running_var"] = g.random(out).astype(np.float32) + 0.5
        cin = out
    for head, classes in (("objects", 1000), ("scenes", 401)):
        w[f"conv5_{head}.weight"] = g.standard_normal((classes, 256, 16)).astype(np.float32)
        w[f"conv5_{head}.bias"] = g.standard_normal(classes).astype(np.float32)
    return w


def convert(src, dst, *extra):
    return subprocess.run([sys.executable, CONVERTER, src, dst, "--arch", "soundnet5", *extra],
                          capture_output=True, text=True)


def same(path, w):
    got, meta = read_safetensors(path)
    return got.keys() == w.keys() and all(np.array_equal(got[k], w[k]) for k in w) and meta.get("architecture") == "soundnet5"


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--workdir", required=True)
    args = a.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    path = lambda n: os.path.join(args.workdir, n)  # noqa: E731
    w = known_weights()

    # TensorFlow port: {convN: {weights (K, 1, Cin, Cout), biases, gamma, beta, mean, var}, conv5, conv5_2}
    tf = {}
    for i in range(1, 5):
        tf[f"conv{i}"] = {"weights": w[f"conv{i}.weight"].transpose(2, 1, 0)[:, None], "biases": w[f"conv{i}.bias"],
                          "gamma": w[f"bn{i}.weight"], "beta": w[f"bn{i}.bias"], "mean": w[f"bn{i}.running_mean"],
                          "var": w[f"bn{i}.running_var"]}
    tf["conv5"] = {"weights": w["conv5_objects.weight"].transpose(2, 1, 0)[:, None], "biases": w["conv5_objects.bias"]}
    tf["conv5_2"] = {"weights": w["conv5_scenes.weight"].transpose(2, 1, 0)[:, None], "biases": w["conv5_scenes.bias"]}
    np.save(path("sound5.npy"), tf, allow_pickle=True)
    p = convert(path("sound5.npy"), path("from-tf.safetensors"))
    check("sound8.npy layout (TensorFlow port)", p.returncode == 0 and same(path("from-tf.safetensors"), w), p.stderr.strip())

    # Keras: conv1d_N kernel (K, Cin, Cout), batch_normalization_N; heads conv1d_5 (1000), conv1d_6 (401)
    try:
        import h5py
        with h5py.File(path("keras.h5"), "w") as f:
            for i in range(1, 5):
                f[f"conv1d_{i}/conv1d_{i}/kernel:0"] = w[f"conv{i}.weight"].transpose(2, 1, 0)
                f[f"conv1d_{i}/conv1d_{i}/bias:0"] = w[f"conv{i}.bias"]
                for src, dst in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                                 ("moving_variance", "running_var")):
                    f[f"batch_normalization_{i}/batch_normalization_{i}/{src}:0"] = w[f"bn{i}.{dst}"]
            for idx, head in ((5, "objects"), (6, "scenes")):
                f[f"conv1d_{idx}/conv1d_{idx}/kernel:0"] = w[f"conv5_{head}.weight"].transpose(2, 1, 0)
                f[f"conv1d_{idx}/conv1d_{idx}/bias:0"] = w[f"conv5_{head}.bias"]
        p = convert(path("keras.h5"), path("from-keras.safetensors"))
        check("Keras HDF5", p.returncode == 0 and same(path("from-keras.safetensors"), w), p.stderr.strip())
    except ImportError:
        print("SKIPPED: Keras HDF5 (python3-h5py missing)")

    # PyTorch port: Sequential(conv, bn, relu) blocks, conv weights (O, I, K, 1); heads conv5, conv5_2
    try:
        import torch
        sd = {}
        for i in range(1, 5):
            sd[f"conv{i}.0.weight"] = torch.from_numpy(w[f"conv{i}.weight"][..., None])
            sd[f"conv{i}.0.bias"] = torch.from_numpy(w[f"conv{i}.bias"])
            for n in ("weight", "bias", "running_mean", "running_var"):
                sd[f"conv{i}.1.{n}"] = torch.from_numpy(w[f"bn{i}.{n}"])
            sd[f"conv{i}.1.num_batches_tracked"] = torch.tensor(5)
        for src, head in (("conv5", "objects"), ("conv5_2", "scenes")):
            sd[f"{src}.weight"] = torch.from_numpy(w[f"conv5_{head}.weight"][..., None])
            sd[f"{src}.bias"] = torch.from_numpy(w[f"conv5_{head}.bias"])
        torch.save(sd, path("port.pth"))
        p = convert(path("port.pth"), path("from-torch.safetensors"))
        check("PyTorch state dict (conv1.0.weight (O, I, K, 1), conv1.1.*, conv5, conv5_2)",
              p.returncode == 0 and same(path("from-torch.safetensors"), w), p.stderr.strip())
    except ImportError:
        print("SKIPPED: PyTorch state dicts (python3-torch missing)")

    del tf["conv3"]["gamma"]
    np.save(path("incomplete.npy"), tf, allow_pickle=True)
    p = convert(path("incomplete.npy"), path("x.safetensors"))
    check("a missing tensor is refused and named", p.returncode == 1 and "bn3.weight: missing" in p.stderr, p.stderr.strip())
    p = convert(path("incomplete.npy"), path("partial.safetensors"), "--partial")
    got, meta = read_safetensors(path("partial.safetensors")) if p.returncode == 0 else ({}, {})
    check("--partial fills it and records it", p.returncode == 0 and meta.get("partial") == "bn3.weight"
          and np.all(got.get("bn3.weight", np.zeros(1)) == 1), p.stderr.strip())
    open(path("text.pth"), "w").write("not weights\n")
    p = convert(path("text.pth"), path("x.safetensors"))
    check("a file of another kind is refused", p.returncode == 1 and "not a recognised weight file" in p.stderr,
          p.stderr.strip())
    p = convert(path("absent.npy"), path("x.safetensors"))
    check("a missing file is refused", p.returncode == 1 and "absent.npy" in p.stderr, p.stderr.strip())

    passed = sum(RESULTS)
    print(f"{passed} passed, {len(RESULTS) - passed} failed")
    return 0 if passed == len(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
