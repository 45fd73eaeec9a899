#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, from real files where they are at hand: .npy and
safetensors files as numpy and soundnet write them (a real weights file's header), the ESC-10
metadata CSV (../shared when present) and a training manifest, the bundled teacher spec, a store
written by tests/cli/store_writer.py (packed as fuzz_store reads it) and short audio and video
files made by ffmpeg (plus the head of a real ESC-10 mp3 when ../shared is present).
    make_seeds.py OUT_DIR REPO_DIR [SHARED_DIR]"""
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

out, repo = sys.argv[1], sys.argv[2]
shared = sys.argv[3] if len(sys.argv) > 3 else ""
sys.path.insert(0, os.path.join(repo, "tests", "cli"))
from store_writer import make_video, write_store  # noqa: E402


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def npy(a):
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


put("fuzz_npy", "f32_2d.npy", npy(np.arange(12, dtype="<f4").reshape(3, 4)))
put("fuzz_npy", "f64_1d.npy", npy(np.linspace(0, 1, 5)))
put("fuzz_npy", "fortran.npy", npy(np.asfortranarray(np.ones((2, 3), "<f4"))))
put("fuzz_npy", "empty.npy", npy(np.zeros((0, 4), "<f4")))


def safetensors(tensors, meta):
    header, data = {}, b""
    for name, a in tensors.items():
        raw = np.ascontiguousarray(a, "<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


rng = np.random.default_rng(0)
put("fuzz_safetensors", "two.safetensors",
    safetensors({"conv1.weight": rng.normal(size=(4, 1, 8)), "conv1.bias": np.zeros(4)}, {"architecture": "x"}))
put("fuzz_safetensors", "checkpoint.safetensors",
    safetensors({"conv1.bias": np.zeros(16), "adam_m.conv1.bias": np.zeros(16), "adam_v.conv1.bias": np.zeros(16)},
                {"format": "soundnet-checkpoint-1", "adam_step": "3", "adam_lr": "0.001", "adam_beta1": "0.9",
                 "adam_beta2": "0.999", "adam_eps": "1e-08"}))
golden = os.path.join(repo, "tests", "data", "golden-soundnet5.safetensors")
if os.path.exists(golden):  # the real header of a soundnet5 file, with the data cut short
    raw = open(golden, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    put("fuzz_safetensors", "golden_head.safetensors", raw[:8 + n + 256])

meta = os.path.join(shared, "data", "esc10", "meta", "esc10.csv") if shared else ""
text = open(meta).read().splitlines() if meta and os.path.exists(meta) else [
    "filename,fold,target,category,esc10,src_file,take", "1-100032-A-0.wav,1,0,dog,True,100032,A"]
put("fuzz_csv", "meta.csv", b"\x00" + "\n".join(text[:12]).encode() + b"\n")
put("fuzz_csv", "quoted.csv", b"\x00" + b'filename,"fold",target\n"a,b.wav",2,3\n')
put("fuzz_csv", "manifest.csv", b"\x01" + b"audio,objects,scenes\nclip.npy,objects.npy,scenes.npy\n")
put("fuzz_csv", "labels.txt", b"\x02" + b"n01 tench\nn02 goldfish\nn03 shark\nn04 ray\nn05 cock\n")

spec = os.path.join(repo, "examples", "data", "teachers", "imagenet_squeezenet1.1.json")
put("fuzz_teacher_spec", "squeezenet.json", open(spec, "rb").read())
put("fuzz_teacher_spec", "minimal.json", json.dumps({"model": "m.onnx", "input_size": [4, 4], "resize": [4, 4],
                                                      "channel_order": "RGB", "mean": [1, 2, 3], "scale": 0.5,
                                                      "classes": 2, "output": "prob"}))

with tempfile.TemporaryDirectory() as tmp:
    d = os.path.join(tmp, "store")
    write_store(d, [("objects", 3)], [make_video(rng, f"v{i}.mp4", 0.05 * (i + 1), [(3, i)]) for i in range(3)])
    parts = [open(os.path.join(d, n), "rb").read() for n in
             ["dataset.json", "index.bin", "videos.tsv", "shard-00000.audio", "shard-00000.frames"]]
    put("fuzz_store", "three_videos", b"".join(struct.pack("<I", len(p)) + p for p in parts))

    if shutil.which("ffmpeg"):
        made = [("tone.wav", ["-f", "lavfi", "-i", "sine=frequency=440:duration=0.3"]),
                ("tone.ogg", ["-f", "lavfi", "-i", "sine=frequency=440:duration=0.3"]),
                ("tone.mp3", ["-f", "lavfi", "-i", "sine=frequency=440:duration=0.3"]),
                ("clip.mp4", ["-f", "lavfi", "-i", "testsrc=size=32x24:rate=4:duration=1", "-f", "lavfi", "-i",
                              "sine=duration=1", "-c:v", "mpeg4", "-shortest"])]
        for name, args in made:
            path = os.path.join(tmp, name)
            r = subprocess.run(["ffmpeg", "-loglevel", "error", "-y"] + args + [path], capture_output=True)
            if r.returncode == 0:
                put("fuzz_media", name, open(path, "rb").read())
mp3 = os.path.join(shared, "data", "esc10", "audio-22k-mp3", "1-100032-A-0.mp3") if shared else ""
if mp3 and os.path.exists(mp3):
    put("fuzz_media", "esc10_head.mp3", open(mp3, "rb").read()[:6000])
print(f"seeds in {out}")
