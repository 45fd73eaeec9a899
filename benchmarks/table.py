#!/usr/bin/env python3
"""Markdown tables of benchmarks/run.sh's results (for docs/benchmarks.md)."""
import json
import statistics
import sys

NAMES = {"infer8_b1": "SoundNet-8 inference, batch 1", "infer8_b16": "SoundNet-8 inference, batch 16",
         "infer5_b1": "SoundNet-5 inference, batch 1", "infer5_b16": "SoundNet-5 inference, batch 16",
         "train8_b8": "SoundNet-8 training step, batch 8 (KL + Adam)"}


def main(results_path, memory_path):
    data = json.load(open(results_path))
    peak = data["gemm_peak_flops"]
    print(f"GEMM peak: {peak / 1e9:.1f} GFLOP/s\n")
    header = "| {} | soundnet ms | LibTorch ms | speed-up | soundnet GFLOP/s | % of GEMM peak |\n|---|---:|---:|---:|---:|---:|"
    groups = [("case", lambda c: c in NAMES), ("SoundNet-8 block", lambda c: c.startswith("layer8")),
              ("SoundNet-5 block", lambda c: c.startswith("layer5"))]
    for title, keep in groups:
        print(header.format(title))
        for r in data["results"]:
            if not keep(r["case"]):
                continue
            rate = r["flops"] / r["ours_s"]
            name = NAMES.get(r["case"], r["case"].split("_")[1])
            print(f"| {name} | {1e3 * r['ours_s']:.2f} | {1e3 * r['libtorch_s']:.2f} | {r['libtorch_s'] / r['ours_s']:.2f}x "
                  f"| {rate / 1e9:.1f} | {100 * rate / peak:.1f}% |")
        print()
    memory = [json.loads(line) for line in open(memory_path) if line.strip()]
    print("| | model ready (above start) | peak (above start) | inference alone |\n|---|---:|---:|---:|")
    for impl, label in (("ours", "soundnet"), ("libtorch", "LibTorch")):
        runs = [m for m in memory if m["impl"] == impl]
        med = lambda f: statistics.median(f(m) / 1024 for m in runs)  # noqa: E731
        print(f"| {label} | {med(lambda m: m['rss_ready_kib'] - m['rss_start_kib']):.1f} MiB "
              f"| {med(lambda m: m['rss_peak_kib'] - m['rss_start_kib']):.1f} MiB "
              f"| {med(lambda m: m['rss_peak_kib'] - m['rss_ready_kib']):.1f} MiB |")


if __name__ == "__main__":
    main(*sys.argv[1:3])
