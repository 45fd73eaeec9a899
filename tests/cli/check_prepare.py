#!/usr/bin/env python3
"""soundnet-prepare on real videos (../shared/data/video) and on every bad-video case; the store
it writes is read with numpy alone (the five lines of docs/dataset.md) and checked against the
ffmpeg program's decoding; a run killed with SIGKILL resumes to the same store.

Exit 77 (skipped) when ../shared or the ffmpeg program is missing."""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, finish  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--prepare", required=True)
p.add_argument("--shared", required=True)
p.add_argument("--workdir", required=True)
a = p.parse_args()

video = os.path.join(a.shared, "data", "video")
teachers = os.path.join(a.shared, "teachers")
if not os.path.isdir(video) or not os.path.isdir(teachers):
    print(f"SKIPPED: {a.shared} (the shared reference data) is absent")
    sys.exit(77)
if shutil.which("ffmpeg") is None:
    print("SKIPPED: the ffmpeg program is missing (Debian: ffmpeg)")
    sys.exit(77)

shutil.rmtree(a.workdir, ignore_errors=True)
os.makedirs(a.workdir)


def run(args, **kw):
    return subprocess.run([a.prepare] + args, capture_output=True, text=True, **kw)


T = ["--teacher", os.path.join(teachers, "imagenet_squeezenet1.1.json"),
     "--teacher", os.path.join(teachers, "places365_squeezenet_bn.json")]


def numpy_store(d):
    """The store as numpy reads it: the five lines of docs/dataset.md."""
    meta = json.load(open(f"{d}/dataset.json"))
    idx = np.fromfile(f"{d}/index.bin", dtype=np.dtype([tuple(f) for f in meta["index_dtype"]]))
    keys = open(f"{d}/videos.tsv").read().splitlines()
    audio = lambda r: np.memmap(f"{d}/shard-{r['shard']:05d}.audio", "<i2", "r", int(r["audio_offset"]), (int(r["samples"]),))
    frames = lambda r: np.memmap(f"{d}/shard-{r['shard']:05d}.frames", "<f4", "r", int(r["frames_offset"]), (int(r["frames"]), meta["frame_columns"]))
    return meta, idx, keys, audio, frames


# ---- bad videos, each reported on one line, and good ones stored -------------------------------
bad = os.path.join(a.workdir, "bad")
os.makedirs(bad)
noaudio = os.path.join(bad, "no-audio.mp4")
subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-t", "8",
                "-c:v", "mpeg4", noaudio], check=True)
esc = os.path.join(a.shared, "data", "esc10", "audio-44k-ogg")
novideo = os.path.join(esc, sorted(os.listdir(esc))[0])
corrupt = os.path.join(bad, "corrupt.mp4")
with open(corrupt, "wb") as f:
    f.write(os.urandom(50000))
truncated = os.path.join(bad, "truncated.mp4")
with open(os.path.join(video, "research", "vas_dog_video_02754.mp4"), "rb") as f:
    data = f.read()
with open(truncated, "wb") as f:
    f.write(data[: len(data) // 3])
huge = os.path.join(bad, "huge-frames.avi")  # 9000 x 8000: over media::max_frame_pixels
subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=gray:size=9000x8000:rate=0.5", "-f", "lavfi",
                "-i", "sine=frequency=440:sample_rate=22050", "-t", "8", "-c:v", "mjpeg", "-c:a", "pcm_s16le", huge],
               check=True)
short = os.path.join(video, "free", "mdn_stream-of-water.mp4")  # 3.16 s
missing = os.path.join(bad, "missing.mp4")
good = [os.path.join(video, "free", "mdn_friday.mp4"), os.path.join(video, "research", "vas_dog_video_02677.mp4")]

store = os.path.join(a.workdir, "store")
r = run(T + ["--out", store, "--min-seconds", "5", "--jobs", "2", noaudio, novideo, corrupt, truncated, huge, short, missing] + good)
print(r.stderr)
check(r.returncode == 1, f"bad videos give exit status 1 (got {r.returncode})")
lines = r.stderr.splitlines()
for path, fragment in [(noaudio, "has no audio stream"), (novideo, "has no video stream"), (short, "too short"),
                       (corrupt, ""), (truncated, ""), (missing, ""), (huge, "9000 x 8000 pixels")]:
    hit = [l for l in lines if path in l]
    check(len(hit) == 1 and "skipped" in hit[0] and fragment in hit[0],
          f"{os.path.basename(path)} reported on one line ({fragment or 'named'})")
check(any("2 added, 0 already in the store, 7 failed" in l for l in lines), "the summary counts added and failed videos")

meta, idx, keys, audio, frames = numpy_store(store)
check(len(idx) == 2 and sorted(keys) == sorted(os.path.abspath(g) for g in good), "the store holds the two good videos")
check(meta["frame_columns"] == 1 + 1000 + 365, "frame rows: time + 1000 + 365 posteriors")
for r_, key in zip(idx, keys):
    pcm = np.array(audio(r_))
    ref = np.frombuffer(subprocess.run(["ffmpeg", "-v", "error", "-i", key, "-ac", "1", "-ar", "22050", "-f", "f32le", "-"],
                                       capture_output=True, check=True).stdout, "<f4")
    n = min(len(ref), len(pcm))
    err = np.abs(pcm[:n] * meta["audio_scale"] / 256 - ref[:n]).max()  # ffmpeg's PCM is the waveform / 256
    check(abs(len(ref) - len(pcm)) <= 1 and err <= meta["audio_scale"] / 512 + 1e-7,
          f"{os.path.basename(key)}: stored audio = ffmpeg's decoding to the int16 step ({len(pcm)} samples, "
          f"peak {np.abs(ref).max():.3f} of full scale, error {err:.2e})")
    check(zlib.crc32(pcm.tobytes()) == r_["audio_crc32"], f"{os.path.basename(key)}: audio CRC-32")
    fr = np.array(frames(r_))
    duration = len(pcm) / 22050
    check(abs(len(fr) - np.ceil(duration)) <= 1, f"{os.path.basename(key)}: {len(fr)} frames at 1/s for {duration:.2f} s")
    check(np.all(np.diff(fr[:, 0]) > 0.5) and fr[0, 0] < 0.5, "frame times increase by about a second from 0")
    check(np.allclose(fr[:, 1:1001].sum(1), 1, atol=1e-3) and np.allclose(fr[:, 1001:].sum(1), 1, atol=1e-3),
          "each teacher's posteriors sum to 1")
    check(zlib.crc32(fr.astype("<f4").tobytes()) == r_["frames_crc32"], f"{os.path.basename(key)}: frames CRC-32")

r = run(T + ["--out", store, "--min-seconds", "5"] + good)
check(r.returncode == 0 and "0 added, 2 already in the store, 0 failed" in r.stderr, "a second run skips prepared videos")
r = run(["--teacher", os.path.join(teachers, "imagenet_squeezenet1.1.json"), "--out", store] + good)
check(r.returncode == 1 and "holds imagenet_squeezenet1.1 (1000), places365_squeezenet_bn (365)" in r.stderr,
      "other teachers for an existing store: refused, saying what it holds")
r = run(["--out", store] + good)
check(r.returncode == 2, "no --teacher: a usage error")

# ---- a run killed with SIGKILL resumes --------------------------------------------------------
research = sorted(os.path.join(video, "research", f) for f in os.listdir(os.path.join(video, "research")))[:6]
killed = os.path.join(a.workdir, "killed")
proc = subprocess.Popen([a.prepare] + T + ["--out", killed, "--jobs", "1"] + research,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
deadline = time.time() + 300
while time.time() < deadline and proc.poll() is None:
    if os.path.exists(f"{killed}/index.bin") and os.path.getsize(f"{killed}/index.bin") >= 64:
        break
    time.sleep(0.02)
time.sleep(0.3)  # into the next video
proc.send_signal(signal.SIGKILL)
proc.wait()
before = os.path.getsize(f"{killed}/index.bin") // 64
check(0 < before < len(research), f"the killed run had stored {before} of {len(research)} videos")
r = run(T + ["--out", killed, "--jobs", "2"] + research)
check(r.returncode == 0 and f"{len(research) - before} added, {before} already in the store" in r.stderr,
      "the rerun prepares only the rest")
meta, idx, keys, audio, frames = numpy_store(killed)
check(sorted(keys) == sorted(os.path.abspath(x) for x in research), "every video once after the resume")
ok = all(zlib.crc32(np.array(audio(r_)).tobytes()) == r_["audio_crc32"] and
         zlib.crc32(np.array(frames(r_)).tobytes()) == r_["frames_crc32"] for r_ in idx)
check(ok, "every entry passes its CRC-32s")

finish()
