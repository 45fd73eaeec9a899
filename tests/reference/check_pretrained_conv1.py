#!/usr/bin/env python3
"""The external reference for conv1/BN1: the authors' pretrained conv1 and BN1, imported from the
Keras HDF5 in ../shared/reference/pretrained-partial by apps/convert_weights.py and run
through the library (soundnet-reference, tests/reference/driver.cpp) on example.wav, must
reproduce the four numbers printed by a third party running the real weights:
conv1 max 1584.0886 / min -1547.1093, BN1 max 17.7110 / min -17.3334 (4 significant digits).

  check_pretrained_conv1.py --driver BIN --shared DIR --workdir DIR
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

EXPECTED = {"conv1_linear": (1584.0886, -1547.1093), "bn1": (17.7110, -17.3334)}


def significant(a, b, digits=4):
    return float(f"{a:.{digits}g}") == float(f"{b:.{digits}g}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--driver", required=True, help="soundnet-reference")
    p.add_argument("--shared", required=True)
    p.add_argument("--workdir", required=True)
    args = p.parse_args()
    folder = os.path.join(args.shared, "reference", "pretrained-partial")
    h5path, wavpath = os.path.join(folder, "p-Snet_weights.hdf5"), os.path.join(folder, "example.wav")
    if not (os.path.exists(h5path) and os.path.exists(wavpath)):
        print(f"SKIPPED: {folder} is not there (the shared reference material is absent)")
        return 77
    os.makedirs(args.workdir, exist_ok=True)

    # The authors' conv1/BN1 (and conv2/BN2) through the converter; the pruned layers become
    # placeholders (--partial), which conv1 and BN1 do not read.
    wpath = os.path.join(args.workdir, "pretrained-conv1.safetensors")
    converter = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "apps", "convert_weights.py")
    p = subprocess.run([sys.executable, converter, h5path, wpath, "--arch", "soundnet8", "--partial"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        print(f"FAIL  convert_weights.py on {h5path}: {p.stderr.strip()}")
        return 1
    imported = [line for line in p.stderr.splitlines() if "conv1." in line or "bn1." in line]
    if imported:
        print(f"FAIL  conv1/BN1 were not imported: {imported}")
        return 1

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
        subprocess.run([args.driver, "extract", "--arch", "soundnet8", "--weights", wpath, "--input-npy", xpath,
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
