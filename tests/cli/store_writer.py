"""A soundnet dataset store written by numpy alone, from the layout in docs/dataset.md (so the
format is tested from the other side too), and synthetic videos to fill it."""
import json
import os
import zlib

import numpy as np


def write_store(d, teachers, videos, audio_scale=1 / 64):
    """videos: list of (key, waveform float array, frame rows (frames, 1 + classes))."""
    os.makedirs(d)
    cols = 1 + sum(c for _, c in teachers)
    dtype = [("shard", "<u4"), ("frames", "<u4"), ("audio_offset", "<u8"), ("samples", "<u8"),
             ("frames_offset", "<u8"), ("audio_crc32", "<u4"), ("frames_crc32", "<u4"), ("key_hash", "<u8"),
             ("reserved", "<u8", 2)]
    meta = {"format": "soundnet-dataset-1", "sample_rate": 22050, "audio_scale": audio_scale, "frame_rate": 1.0,
            "teachers": [{"name": n, "classes": c, "labels": []} for n, c in teachers], "shard_bytes": 1 << 30,
            "frame_columns": cols, "index_dtype": [list(f) if len(f) == 2 else [f[0], f[1], f[2]] for f in dtype]}
    json.dump(meta, open(f"{d}/dataset.json", "w"))
    idx = np.zeros(len(videos), dtype=dtype)
    audio, frames = b"", b""
    for i, (key, wave, rows) in enumerate(videos):
        pcm = np.clip(np.round(wave / audio_scale), -32768, 32767).astype("<i2").tobytes()
        fr = rows.astype("<f4").tobytes()
        h = 0xCBF29CE484222325
        for ch in key.encode():
            h = ((h ^ ch) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
        idx[i] = (0, len(rows), len(audio), len(pcm) // 2, len(frames), zlib.crc32(pcm), zlib.crc32(fr), h, (0, 0))
        audio += pcm
        frames += fr
    idx.tofile(f"{d}/index.bin")
    open(f"{d}/shard-00000.audio", "wb").write(audio)
    open(f"{d}/shard-00000.frames", "wb").write(frames)
    open(f"{d}/videos.tsv", "w").write("".join(k + "\n" for k, _, _ in videos))


def make_video(rng, key, seconds, posteriors, freq=None):
    """posteriors: per teacher, (classes, the class the frames show)."""
    n = int(seconds * 22050)
    freq = rng.uniform(0.01, 0.2) if freq is None else freq
    wave = (60 * np.sin(np.arange(n) * freq) + rng.normal(0, 20, n)).astype(np.float32)
    frames = int(np.ceil(seconds))
    rows = [np.arange(frames, dtype=np.float32)[:, None]]
    for classes, k in posteriors:
        q = np.full((frames, classes), 0.02 / (classes - 1), np.float32)
        q[:, k] = 0.98
        rows.append(q)
    return key, wave, np.hstack(rows)
