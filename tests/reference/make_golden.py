#!/usr/bin/env python3
"""Writes tests/data/golden-soundnet5.safetensors: PyTorch (float64) reference values that the
C++ test test_golden.cpp compares with when python3-torch is not at hand.

Weights, inputs and targets come from closed-form formulas (formula_* below, repeated in
test_golden.cpp), so only the reference outputs are stored: every read-out of an eval-mode
forward pass and every gradient of one training step, each subsampled with a fixed stride.

  /usr/bin/python3 tests/reference/make_golden.py tests/data/golden-soundnet5.safetensors
"""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import soundnet_torch as ref  # noqa: E402

SAMPLES = 60000   # SoundNet-5: one output step
STRIDE = 53       # keep elements 0, s, 2s, ... of each flattened tensor, s = stride(size)


def stride(size):
    return max(STRIDE, size // 2000)


def subsample(a):
    flat = a.ravel()
    return flat[::stride(flat.size)]


def formula_weights(net):
    """Tensor j (state-dict order), element i: a deterministic pattern of the right scale."""
    out = {}
    tensors = [(k, v) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")]
    for j, (name, t) in enumerate(tensors):
        i = np.arange(t.numel(), dtype=np.float64)
        s = np.sin(0.1 + 0.7 * i + 1.3 * j)
        if name.endswith("running_var"):
            v = 1.0 + 0.5 * (1.0 + s)
        elif name.startswith("bn") and name.endswith("weight"):
            v = 1.0 + 0.2 * s
        elif name.endswith("weight"):
            v = s * math.sqrt(3.0 / (t.shape[1] * t.shape[2]))
        else:
            v = 0.1 * s
        out[name] = v.reshape(tuple(t.shape)).astype(np.float32)
    return out


def formula_wave(clip):
    i = np.arange(SAMPLES, dtype=np.float64)
    return (100 * np.sin(0.05 * i + clip) + 30 * np.sin(0.31 * i + 1 + 2 * clip)).astype(np.float32)


def formula_target(clip, classes, steps):
    k = np.arange(classes, dtype=np.float64)[:, None]
    t = np.arange(steps, dtype=np.float64)[None, :]
    z = 2 * np.sin(0.37 * k + 0.11 * t + clip)
    p = np.exp(z) / np.exp(z).sum(0, keepdims=True)
    return p  # (classes, steps)


def main():
    torch.set_default_dtype(torch.float64)
    path = sys.argv[1]
    net = ref.SoundNet("soundnet5")
    weights = formula_weights(net)
    net.load_numpy(weights)
    out = {}
    x = torch.from_numpy(np.stack([formula_wave(0), formula_wave(1)]).astype(np.float64))[:, None]
    net.eval()
    with torch.no_grad():
        for name, t in net(x[:1]).items():
            out["eval." + name] = subsample(t[0].numpy())
    net.train()
    taps = net(x)
    steps = taps["conv5_objects"].shape[2]
    t_obj = torch.from_numpy(np.stack([formula_target(c, 1000, steps) for c in (0, 1)]))
    t_scn = torch.from_numpy(np.stack([formula_target(c, 401, steps) for c in (0, 1)]))
    loss = ref.kl_loss(taps, "conv5", t_obj, t_scn)
    loss.backward()
    out["train.loss"] = np.array([loss.item()])
    for name, p in net.named_parameters():
        out["grad." + name] = subsample(p.grad.numpy())
    for name, v in net.state_dict().items():
        if "running" in name:
            out["after." + name] = v.numpy().ravel()
    ref.write_safetensors(path, out, {"stride": f"max({STRIDE}, size // 2000)", "samples": str(SAMPLES), "generator": "make_golden.py",
                                      "torch": torch.__version__})
    print(f"wrote {path}: {len(out)} tensors, {sum(v.size for v in out.values())} values")


if __name__ == "__main__":
    main()
