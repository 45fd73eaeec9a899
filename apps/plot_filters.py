#!/usr/bin/env python3
"""soundnet-plot-filters: the first layer's filters of a SoundNet weights file as a PNG (the
paper's Figure 5): each conv1 filter's 64 taps as a waveform, and its magnitude spectrum.

    soundnet-plot-filters WEIGHTS.safetensors OUT.png [--columns 8]

Reads safetensors with the standard library and numpy; draws with matplotlib (Debian:
python3-matplotlib). Exit 1 with a message naming the file for a missing or malformed file."""
import argparse
import json
import struct
import sys

import numpy as np


def read_conv1(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise SystemExit(f"soundnet-plot-filters: {path}: cannot read: {e.strerror}")
    if len(raw) < 8:
        raise SystemExit(f"soundnet-plot-filters: {path}: not a safetensors file (too short)")
    n = struct.unpack("<Q", raw[:8])[0]
    try:
        head = json.loads(raw[8:8 + n])
    except ValueError:
        raise SystemExit(f"soundnet-plot-filters: {path}: not a safetensors file (bad header)")
    key = "conv1.weight"
    if key not in head:
        raise SystemExit(f"soundnet-plot-filters: {path}: has no {key}")
    t = head[key]
    if t.get("dtype") != "F32" or len(t.get("shape", [])) != 3:
        raise SystemExit(f"soundnet-plot-filters: {path}: {key} must be F32 (out, in, taps)")
    b, e = t["data_offsets"]
    w = np.frombuffer(raw[8 + n + b:8 + n + e], "<f4")
    if w.size != int(np.prod(t["shape"])):
        raise SystemExit(f"soundnet-plot-filters: {path}: {key} is truncated")
    return w.reshape(t["shape"])[:, 0, :]


def main():
    p = argparse.ArgumentParser(description="Plots SoundNet's conv1 filters (the paper's Figure 5).")
    p.add_argument("weights")
    p.add_argument("out")
    p.add_argument("--columns", type=int, default=8)
    a = p.parse_args()
    w = read_conv1(a.weights)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("soundnet-plot-filters: matplotlib is missing (Debian: python3-matplotlib)")
    filters, taps = w.shape
    cols = max(1, a.columns)
    rows = (filters + cols - 1) // cols
    fig, axes = plt.subplots(2 * rows, cols, figsize=(2 * cols, 2.4 * rows), squeeze=False)
    freqs = np.fft.rfftfreq(256, 1 / 22050) / 1000
    for i in range(rows * cols):
        ax, sp = axes[2 * (i // cols)][i % cols], axes[2 * (i // cols) + 1][i % cols]
        ax.axis("off")
        sp.axis("off")
        if i >= filters:
            continue
        ax.plot(w[i], lw=0.8)
        ax.set_title(f"filter {i}", fontsize=7)
        sp.plot(freqs, np.abs(np.fft.rfft(w[i], 256)), lw=0.8, color="tab:red")
    fig.suptitle(f"conv1 of {a.weights}: taps (blue) and magnitude spectrum 0-11 kHz (red)", fontsize=9)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"soundnet-plot-filters: {filters} filters of {taps} taps -> {a.out}")


if __name__ == "__main__":
    main()
