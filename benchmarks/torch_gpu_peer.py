#!/usr/bin/env python3
"""The PyTorch peer of soundnet-gpu-bench: SoundNet-8 on the same GPU, the same work.

    python3 benchmarks/torch_gpu_peer.py [--batch 64] [--repeats 10] [--modes ...] [--json out.json]

Modes: eager_float32 (cudnn.benchmark on, TF32 off in cuBLAS and cuDNN: strict float32),
eager_tf32, eager_bf16 (autocast to bfloat16, float32 master weights), compile_float32 and
compile_tf32 (torch.compile of the model; skipped with the reason where it fails). Each mode:
the training step (forward, KL of both heads, backward, Adam) with the waveforms resident on the
GPU and uploaded from pageable host memory, inference throughput at --batch and latency at batch
1. Timed with CUDA events after a warm-up; medians. The network is Table 1's SoundNet-8 with
the corrections of ../shared/README.md, as tests/reference/soundnet_torch.py defines it (written
again here so that this file needs torch alone).
"""
import argparse
import json
import statistics
import sys
import time

import torch
from torch import nn
import torch.nn.functional as F

SAMPLES = 441000
# (out, kernel, stride, pad, pool); the last row is the two-headed output
SOUNDNET8 = [(16, 64, 2, 32, 8), (32, 32, 2, 16, 8), (64, 16, 2, 8, None), (128, 8, 2, 4, None),
             (256, 4, 2, 2, 4), (512, 4, 2, 2, None), (1024, 4, 2, 2, None), ("head", 8, 2, 0, None)]


class SoundNet8(nn.Module):
    def __init__(self, objects=1000, scenes=401):
        super().__init__()
        layers, cin = [], 1
        for out, k, s, p, pool in SOUNDNET8[:-1]:
            layers += [nn.Conv1d(cin, out, k, s, p), nn.BatchNorm1d(out), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool1d(pool, pool))
            cin = out
        self.body = nn.Sequential(*layers)
        _, k, s, p, _ = SOUNDNET8[-1]
        self.objects = nn.Conv1d(cin, objects, k, s, p)
        self.scenes = nn.Conv1d(cin, scenes, k, s, p)
        for m in self.modules():  # the paper's initialisation
            if isinstance(m, nn.Conv1d):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        h = self.body(x)
        return self.objects(h), self.scenes(h)


def kl(logits, target):
    n, _, t = logits.shape
    return F.kl_div(F.log_softmax(logits.float(), dim=1), target, reduction="sum") / (n * t)


def median_ms(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def run_mode(mode, batch, repeats):
    tf32 = mode != "eager_float32" and mode != "compile_float32"
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.manual_seed(1)
    dev = torch.device("cuda")
    net = SoundNet8().to(dev)
    model = torch.compile(net) if mode.startswith("compile") else net
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999))
    x_host = torch.randn(batch, 1, SAMPLES) * 20
    x = x_host.to(dev)
    steps = None
    with torch.no_grad():
        steps = net(x[:1])[0].shape[-1]
    t_obj = torch.softmax(torch.randn(batch, 1000, steps, device=dev), 1)
    t_scn = torch.softmax(torch.randn(batch, 401, steps, device=dev), 1)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode == "eager_bf16")

    def step(inp):
        net.train()
        opt.zero_grad(set_to_none=True)
        with autocast:
            o, s = model(inp)
        loss = kl(o, t_obj) + kl(s, t_scn)
        loss.backward()
        opt.step()

    result = {"train_ms": median_ms(lambda: step(x), repeats),
              "train_from_host_ms": median_ms(lambda: step(x_host.to(dev)), repeats)}
    net.eval()
    with torch.inference_mode(), autocast:
        result["infer_b%d_ms" % batch] = median_ms(lambda: model(x), repeats)
        x1 = x[:1].clone()
        result["infer_b1_ms"] = median_ms(lambda: model(x1), repeats)
    result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--modes", default="eager_float32,eager_tf32,eager_bf16,compile_float32,compile_tf32")
    ap.add_argument("--json")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch_gpu_peer: PyTorch sees no CUDA GPU", file=sys.stderr)
        return 2
    out = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
           "gpu": torch.cuda.get_device_name(0), "batch": args.batch}
    for mode in args.modes.split(","):
        t0 = time.time()
        try:
            out[mode] = run_mode(mode, args.batch, args.repeats)
        except Exception as e:  # torch.compile may be unavailable (no Triton, no C compiler)
            out[mode] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        print(f"{mode}: {json.dumps(out[mode])} ({time.time() - t0:.0f} s)", flush=True)
        if args.json:  # after every mode: a time limit that stops a slow compile keeps the others
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
