#!/usr/bin/env python3
"""The external reference for conv1/BN1: the authors' pretrained conv1 and BN1 (from the Keras
HDF5 in ../shared/reference/pretrained-partial) run through soundnet-extract on example.wav must
reproduce the four numbers printed by a third party running the real weights:
conv1 max 1584.0886 / min -1547.1093, BN1 max 17.7110 / min -17.3334 (4 significant digits).

  check_pretrained_conv1.py --extract BIN --shared DIR --workdir DIR
Exit 0 on success, 1 on a mismatch, 77 (skipped) when ../shared or h5py/numpy is missing.
"""
import argparse
import os
import subprocess
import sys
import wave

try:
    import h5py
    import numpy as np
except ImportError as e:
    print(f"SKIPPED: needs python3-h5py and python3-numpy ({e})")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_np import write_safetensors  # noqa: E402

EXPECTED = {"conv1_linear": (1584.0886, -1547.1093), "bn1": (17.7110, -17.3334)}


def significant(a, b, digits=4):
    return float(f"{a:.{digits}g}") == float(f"{b:.{digits}g}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--extract", required=True)
    p.add_argument("--shared", required=True)
    p.add_argument("--workdir", required=True)
    args = p.parse_args()
    folder = os.path.join(args.shared, "reference", "pretrained-partial")
    h5path, wavpath = os.path.join(folder, "p-Snet_weights.hdf5"), os.path.join(folder, "example.wav")
    if not (os.path.exists(h5path) and os.path.exists(wavpath)):
        print(f"SKIPPED: {folder} is not there (the shared reference material is absent)")
        return 77
    os.makedirs(args.workdir, exist_ok=True)

    # A SoundNet-8 weight file: the authors' conv1 and BN1, the rest zeros (not read here).
    tensors = {}
    shapes = [(16, 1, 64), (32, 16, 32), (64, 32, 16), (128, 64, 8), (256, 128, 4), (512, 256, 4), (1024, 512, 4)]
    for i, shape in enumerate(shapes, start=1):
        tensors[f"conv{i}.weight"] = np.zeros(shape, np.float32)
        tensors[f"conv{i}.bias"] = np.zeros(shape[0], np.float32)
        for k, v in (("weight", 1), ("bias", 0), ("running_mean", 0), ("running_var", 1)):
            tensors[f"bn{i}.{k}"] = np.full(shape[0], v, np.float32)
    for head, classes in (("objects", 1000), ("scenes", 401)):
        tensors[f"conv8_{head}.weight"] = np.zeros((classes, 1024, 8), np.float32)
        tensors[f"conv8_{head}.bias"] = np.zeros(classes, np.float32)
    with h5py.File(h5path, "r") as f:
        conv, bn = f["conv1d_1/conv1d_1"], f["batch_normalization_1/batch_normalization_1"]
        tensors["conv1.weight"] = np.transpose(conv["kernel:0"][()], (2, 1, 0))  # (K, Cin, Cout) -> (Cout, Cin, K)
        tensors["conv1.bias"] = conv["bias:0"][()]
        tensors["bn1.weight"] = bn["gamma:0"][()]
        tensors["bn1.bias"] = bn["beta:0"][()]
        tensors["bn1.running_mean"] = bn["moving_mean:0"][()]
        tensors["bn1.running_var"] = bn["moving_variance:0"][()]
    wpath = os.path.join(args.workdir, "pretrained-conv1.safetensors")
    write_safetensors(wpath, tensors, {"architecture": "soundnet8"})

    # example.wav: 48 kHz stereo int16; channel 0 / 32768 * 256, tiled 3 times.
    with wave.open(wavpath) as w:
        assert w.getsampwidth() == 2, "example.wav is expected to be 16-bit"
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())
    x = np.tile(pcm[:, 0].astype(np.float32) / 32768.0 * 256.0, 3)
    xpath = os.path.join(args.workdir, "example.npy")
    np.save(xpath, x)

    failed = 0
    for layer, (want_max, want_min) in EXPECTED.items():
        out = os.path.join(args.workdir, layer + ".npy")
        subprocess.run([args.extract, "--arch", "soundnet8", "--weights", wpath, "--input-npy", xpath,
                        "--layer", layer, "--out", out], check=True)
        y = np.load(out)
        ok = significant(y.max(), want_max) and significant(y.min(), want_min)
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {layer} on example.wav ({len(x)} samples): max {y.max():.4f} "
              f"min {y.min():.4f}; reference max {want_max} min {want_min}")
    print(f"{len(EXPECTED) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
