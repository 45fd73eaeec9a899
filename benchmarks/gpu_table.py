#!/usr/bin/env python3
"""One table from soundnet-gpu-bench's JSON and torch_gpu_peer.py's JSON (benchmarks/gpu.sh).

    python3 benchmarks/gpu_table.py ours.json torch.json
"""
import json
import sys


def main():
    def load(path):
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            print(f"gpu_table: no figures from {path} ({e}); see the logs beside it")
            return {}

    ours = load(sys.argv[1])
    theirs = load(sys.argv[2]) if len(sys.argv) > 2 else {}
    if not ours:
        return 1
    batch = int(ours.get("train8_float32", {}).get("batch", 64))
    print(f"GPU: {theirs.get('gpu', '?')}; PyTorch {theirs.get('torch', '?')}, CUDA {theirs.get('cuda', '?')}, "
          f"cuDNN {theirs.get('cudnn', '?')}")
    peaks = ours.get("peaks", {})
    if peaks:
        print(f"measured ceilings: copy {peaks['copy_bytes_per_s'] / 1e9:.0f} GB/s, SGEMM float32 "
              f"{peaks['sgemm_flops'] / 1e12:.1f} TFLOP/s, TF32 {peaks['tf32_flops'] / 1e12:.1f} TFLOP/s")

    def peer(mode, key):
        v = theirs.get(mode, {})
        return v.get(key) if isinstance(v, dict) and "error" not in v else None

    rows = []
    for precision, ours_key, eager, compiled, peak_key in (
            ("float32", "train8_float32", "eager_float32", "compile_float32", "sgemm_flops"),
            ("TF32", "train8_tf32", "eager_tf32", "compile_tf32", "tf32_flops")):
        r = ours.get(ours_key)
        if not r:
            continue
        ms = 1e3 * r["seconds"]
        e, c = peer(eager, "train_from_host_ms"), peer(compiled, "train_from_host_ms")
        floor = max(r["flops"] / peaks.get(peak_key, float("inf")), r["bytes_floor"] / peaks.get("copy_bytes_per_s", float("inf")))
        rows.append((f"train step b{batch} {precision}", ms, e, c, 1e3 * floor))
    for key, label in (("train8_float32_staged", f"train b{batch} float32, staged uploads*"),
                       ("train8_float32_resident", f"train b{batch} float32, input resident*")):
        r = ours.get(key)
        if r:
            rows.append((label, 1e3 * r["seconds"], None, None, None))
    r, bf16 = ours.get("train8_bf16"), peer("eager_bf16", "train_from_host_ms")
    if r or bf16:  # ours: bf16 GEMM operands, float32 storage; PyTorch: autocast
        rows.append((f"train step b{batch} bf16 (ours: GEMMs)", 1e3 * r["seconds"] if r else None, bf16, None, None))
    for key, label in ((f"infer8_b{batch}", f"inference b{batch} float32"), ("infer8_b1", "inference b1 float32 (latency)")):
        r = ours.get(key)
        if r:
            tk = f"infer_b{batch}_ms" if key != "infer8_b1" else "infer_b1_ms"
            rows.append((label, 1e3 * r["seconds"], peer("eager_float32", tk), peer("compile_float32", tk), None))

    def f(v):
        return f"{v:10.2f}" if v is not None else f"{'-':>10}"

    print(f"{'ms (median)':38} {'soundnet':>10} {'eager':>10} {'compile':>10} {'eager/us':>9} {'compile/us':>10} {'floor':>10}")
    for name, us, e, c, floor in rows:
        ratio = lambda v: f"{v / us:9.2f}x" if (v and us) else f"{'-':>10}"
        print(f"{name:38} {f(us)} {f(e)} {f(c)} {ratio(e)} {ratio(c)} {f(floor)}")
    if "train8_float32_staged" in ours:
        print("* consecutive steps without a wait between them (the upload beside the previous step's backward pass)")
    for key, label in (("train8_float32", "float32"), ("train8_tf32", "TF32"), ("train8_bf16", "bf16")):
        if key in ours:
            print(f"100,000 iterations of batch {batch} projected: {ours[key]['seconds'] * 1e5 / 60:.1f} min "
                  f"(soundnet, {label})")
    for mode, v in theirs.items():
        if isinstance(v, dict) and "error" in v:
            print(f"PyTorch {mode}: not measured ({v['error']})")


if __name__ == "__main__":
    sys.exit(main())
