#!/usr/bin/env python3
"""Converts SoundNet weights as the community distributes them into soundnet's safetensors.

  convert_weights.py INPUT OUTPUT.safetensors [--arch soundnet8|soundnet5] [--partial]

INPUT formats (chosen by content):
- the TensorFlow port's `sound8.npy`: a pickled dict {conv1..conv7: {weights (K, 1, Cin, Cout),
  biases, gamma, beta, mean, var}, conv8 (objects), conv8_2 (scenes): {weights, biases}};
- PyTorch state dicts of the common ports (.pth/.pt, needs python3-torch): `conv1.0.weight`
  (O, I, K, 1) or (O, I, 1, K) or (O, I, K), `conv1.0.bias`, `conv1.1.weight|bias|running_mean|
  running_var`, heads `conv8.*` / `conv8_2.*` (also `conv8_objects.*` / `conv8_scenes.*`);
- Keras HDF5 (needs python3-h5py): `conv1d_N` kernels (K, Cin, Cout) and biases,
  `batch_normalization_N` gamma/beta/moving_mean/moving_variance; the heads are the conv1d layers
  with 1000 (objects) and 401 or 365 (scenes) outputs.

Every tensor soundnet expects must be found with the right shape; otherwise the conversion
stops and lists what is missing or mismatched. --partial writes what fits and fills the rest
with an identity-like placeholder (zero convolutions, batch norm 1/0/0/1), listing them, and
records them in the file's metadata ("partial"): for reference checks on partial releases, not
for inference.
"""
import argparse
import json
import os
import pickle
import re
import struct
import sys

import numpy as np

BLOCKS = {"soundnet8": [(16, 1, 64), (32, 16, 32), (64, 32, 16), (128, 64, 8), (256, 128, 4), (512, 256, 4),
                        (1024, 512, 4)],
          "soundnet5": [(32, 1, 64), (64, 32, 32), (128, 64, 16), (256, 128, 8)]}
HEADS = {"soundnet8": (1024, 8), "soundnet5": (256, 16)}


def expected(arch, scenes):
    """soundnet's tensor names and shapes, in state-dict order."""
    out = {}
    for i, (o, c, k) in enumerate(BLOCKS[arch], start=1):
        out[f"conv{i}.weight"], out[f"conv{i}.bias"] = (o, c, k), (o,)
        for n in ("weight", "bias", "running_mean", "running_var"):
            out[f"bn{i}.{n}"] = (o,)
    head = f"conv{len(BLOCKS[arch]) + 1}"
    cin, k = HEADS[arch]
    for name, classes in (("objects", 1000), ("scenes", scenes)):
        out[f"{head}_{name}.weight"], out[f"{head}_{name}.bias"] = (classes, cin, k), (classes,)
    return out


def conv_to_ock(w, layout):
    """A convolution kernel to (C_out, C_in, K)."""
    w = np.asarray(w, np.float32)
    if layout == "tf":  # (K, 1, Cin, Cout)
        return np.ascontiguousarray(w.reshape(w.shape[0], w.shape[-2], w.shape[-1]).transpose(2, 1, 0))
    if layout == "keras":  # (K, Cin, Cout)
        return np.ascontiguousarray(w.transpose(2, 1, 0))
    # torch: (O, I, K), (O, I, K, 1) or (O, I, 1, K)
    if w.ndim == 4:
        w = w[:, :, :, 0] if w.shape[3] == 1 else w[:, :, 0, :]
    return np.ascontiguousarray(w)


def from_tf_npy(path, arch):
    d = np.load(path, allow_pickle=True, encoding="latin1").item()
    out, n = {}, len(BLOCKS[arch])
    for i in range(1, n + 1):
        layer = d.get(f"conv{i}", {})
        if "weights" in layer:
            out[f"conv{i}.weight"] = conv_to_ock(layer["weights"], "tf")
        for src, dst in (("biases", f"conv{i}.bias"), ("gamma", f"bn{i}.weight"), ("beta", f"bn{i}.bias"),
                         ("mean", f"bn{i}.running_mean"), ("var", f"bn{i}.running_var")):
            if src in layer:
                out[dst] = np.asarray(layer[src], np.float32).reshape(-1)
    for src, head in ((f"conv{n + 1}", "objects"), (f"conv{n + 1}_2", "scenes")):
        layer = d.get(src, {})
        if "weights" in layer:
            out[f"conv{n + 1}_{head}.weight"] = conv_to_ock(layer["weights"], "tf")
        if "biases" in layer:
            out[f"conv{n + 1}_{head}.bias"] = np.asarray(layer["biases"], np.float32).reshape(-1)
    return out


def from_torch(path, arch):
    import torch  # python3-torch
    sd = torch.load(path, map_location="cpu")
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    sd = {re.sub(r"^module\.", "", k): v.detach().float().numpy() for k, v in sd.items() if hasattr(v, "detach")}
    out, n = {}, len(BLOCKS[arch])
    for key, v in sd.items():
        if re.fullmatch(r"bn\d+\.(weight|bias|running_mean|running_var)", key):  # already soundnet's names
            out[key] = v.reshape(-1)
            continue
        m = re.fullmatch(r"conv(\d+)(_2|_objects|_scenes)?(?:\.(\d+))?\.(weight|bias|running_mean|running_var)", key)
        if not m:
            continue
        i, suffix, sub, kind = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        if i == n + 1:  # the heads: convN (objects) and convN_2 (scenes)
            name = f"conv{i}_{'scenes' if suffix in ('_2', '_scenes') else 'objects'}"
        elif sub == "1":  # Sequential(conv, batch norm, ...)
            out[f"bn{i}.{kind}"] = v.reshape(-1)
            continue
        else:
            name = f"conv{i}"
        if kind == "weight":
            out[f"{name}.weight"] = conv_to_ock(v, "torch")
        elif kind == "bias":
            out[f"{name}.bias"] = v.reshape(-1)
    return out


def from_keras(path, arch, scenes):
    import h5py  # python3-h5py
    out, convs, bns = {}, {}, {}
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                m = re.search(r"(conv1d|batch_normalization)_(\d+)/([a-z_]+):0$", name)
                if m:
                    (convs if m.group(1) == "conv1d" else bns).setdefault(int(m.group(2)), {})[m.group(3)] = obj[()]
        root.visititems(visit)
    n = len(BLOCKS[arch])
    head = f"conv{n + 1}"
    blocks = sorted(convs)
    for idx in blocks:
        kernel, bias = convs[idx].get("kernel"), convs[idx].get("bias")
        if kernel is None:
            continue
        cout = kernel.shape[-1]
        if idx > n and cout in (1000, scenes):  # a head
            name = f"{head}_{'objects' if cout == 1000 else 'scenes'}"
        else:
            name = f"conv{idx}"
        out[f"{name}.weight"] = conv_to_ock(kernel, "keras")
        if bias is not None:
            out[f"{name}.bias"] = np.asarray(bias, np.float32)
    for idx, layer in bns.items():
        for src, dst in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                         ("moving_variance", "running_var")):
            if src in layer:
                out[f"bn{idx}.{dst}"] = np.asarray(layer[src], np.float32)
    return out


def detect(path):
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x89HDF"):
        return "keras"
    if head.startswith(b"\x93NUMPY"):
        return "tf"
    if head.startswith(b"PK") or head[:1] == b"\x80":
        return "torch"
    raise ValueError("not a recognised weight file (expected sound8.npy, a PyTorch state dict or Keras HDF5)")


def write_safetensors(path, tensors, metadata):
    header, offset, blobs = {"__metadata__": metadata}, 0, []
    for name, value in tensors.items():
        a = np.ascontiguousarray(value, dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        blobs.append(a.tobytes())
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def convert(src, dst, arch, scenes=401, partial=False):
    """Returns the names filled by placeholders (empty unless partial)."""
    kind = detect(src)
    found = {"tf": from_tf_npy, "torch": from_torch}.get(kind, None)
    found = found(src, arch) if found else from_keras(src, arch, scenes)
    want = expected(arch, scenes)
    problems, out, filled = [], {}, []
    for name, shape in want.items():
        value = found.get(name)
        if value is not None and tuple(value.shape) == shape:
            out[name] = value.astype(np.float32)
            continue
        problems.append(f"{name}: " + ("missing" if value is None else f"shape {tuple(value.shape)}, expected {shape}"))
        filled.append(name)
        fill = 1.0 if name.endswith(("running_var",)) or (name.startswith("bn") and name.endswith("weight")) else 0.0
        out[name] = np.full(shape, fill, np.float32)
    if problems and not partial:
        raise ValueError(f"does not fit {arch}:\n  " + "\n  ".join(problems))
    metadata = {"architecture": arch, "source": os.path.basename(src), "source_format": kind}
    if filled:
        metadata["partial"] = ",".join(filled)
    write_safetensors(dst, out, metadata)
    return problems


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--arch", default="soundnet8", choices=sorted(BLOCKS))
    p.add_argument("--scenes", type=int, default=401, choices=(401, 365))
    p.add_argument("--partial", action="store_true", help="write what fits; placeholders for the rest")
    args = p.parse_args()
    try:
        problems = convert(args.input, args.output, args.arch, args.scenes, args.partial)
    except (OSError, ValueError, KeyError, pickle.UnpicklingError) as e:
        print(f"convert_weights: {args.input}: {e}", file=sys.stderr)
        return 1
    for line in problems:
        print(f"convert_weights: placeholder for {line}", file=sys.stderr)
    print(f"wrote {args.output} ({args.arch}{', partial' if problems else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
