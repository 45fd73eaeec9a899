#!/usr/bin/env python3
"""Bar plot of benchmarks/run.sh's results: milliseconds per case, soundnet and LibTorch."""
import json
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(results_path, memory_path, png_path):
    results = json.load(open(results_path))["results"]
    memory = [json.loads(line) for line in open(memory_path) if line.strip()]
    fig, (ax, mx) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [4, 1]})
    names = [r["case"] for r in results]
    x = range(len(names))
    ours = [1e3 * r["ours_s"] for r in results]
    peer = [1e3 * r["libtorch_s"] for r in results]
    ax.bar([i - 0.2 for i in x], ours, 0.4, label="soundnet")
    ax.bar([i + 0.2 for i in x], peer, 0.4, label="LibTorch 1.13 (oneDNN)")
    for i, (a, b) in enumerate(zip(ours, peer)):
        ax.text(i, max(a, b) * 1.15, f"{b / a:.1f}x", ha="center", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(list(x))
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_ylabel("milliseconds (median, log scale)")
    ax.set_title("SoundNet on the CPU, 2 threads: time per call (lower is better)")
    ax.legend()
    for k, impl in enumerate(("ours", "libtorch")):
        runs = sorted(m["rss_peak_kib"] - m["rss_start_kib"] for m in memory if m["impl"] == impl)
        mx.bar(k, runs[len(runs) // 2] / 1024, 0.6, color=f"C{k}")
    mx.set_xticks([0, 1])
    mx.set_xticklabels(["soundnet", "LibTorch"])
    mx.set_ylabel("MiB above process start (median)")
    mx.set_title("Peak memory, 20 s inference")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:4])
