#!/usr/bin/env python3
"""soundnet-decode against the ffmpeg command line, and on bad input.

  check_decode.py --decode BIN --shared DIR --workdir DIR

Every clip of ../shared/data/esc10 (Ogg/Vorbis 44.1 kHz and MP3 22.05 kHz) and the audio of every
video in ../shared/data/video must match `ffmpeg -i F -ac 1 -ar 22050 -f f32le -` x 256
(correlation > 0.999, lengths within 32 samples). Bad files (missing, empty, truncated, corrupt,
not media, video without audio, a directory, absurd rates or channel counts) get one line naming
the file; the other files are still decoded; the exit status is 1. A stream whose channel count
and rate change midway is decoded whole. Exit 77 (skipped) without numpy, the ffmpeg program or
../shared.
"""
import argparse
import glob
import os
import shutil
import struct
import subprocess
import sys

try:
    import numpy as np
except ImportError as e:
    print(f"SKIPPED: needs python3-numpy ({e})")
    sys.exit(77)

RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}  {name}{': ' + detail if detail else ''}", flush=True)


def ffmpeg_reference(path, extra=()):
    out = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", path, *extra, "-ac", "1", "-ar", "22050",
                          "-f", "f32le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(out, "<f4").astype(np.float64) * 256


def compare_folder(decode, files, workdir, label):
    outdir = os.path.join(workdir, label)
    p = subprocess.run([decode, "--out-dir", outdir, *files], capture_output=True, text=True)
    worst_corr, worst_len, failures = 1.0, 0, []
    for f in files:
        path = os.path.join(outdir, os.path.basename(f) + ".npy")
        if not os.path.exists(path):
            failures.append(f"{os.path.basename(f)} not decoded")
            continue
        ours, ref = np.load(path).astype(np.float64), ffmpeg_reference(f)
        n = min(len(ours), len(ref))
        corr = float(np.corrcoef(ours[:n], ref[:n])[0, 1]) if n > 1 and np.std(ref[:n]) > 0 else \
            (1.0 if np.array_equal(ours[:n], ref[:n]) else 0.0)
        worst_corr, worst_len = min(worst_corr, corr), max(worst_len, abs(len(ours) - len(ref)))
        if not (corr > 0.999 and abs(len(ours) - len(ref)) <= 32):
            failures.append(f"{os.path.basename(f)}: correlation {corr:.6f}, lengths {len(ours)} vs {len(ref)}")
    check(f"decode {label}: {len(files)} files match ffmpeg", p.returncode == 0 and not failures,
          f"worst correlation {worst_corr:.7f}, worst length difference {worst_len} samples"
          + ("; " + "; ".join(failures[:5]) if failures else "") + (f"; stderr: {p.stderr.strip()}" if p.returncode else ""))


def soundnet5_weights(path):
    """Random SoundNet-5 weights (float32 safetensors) with sane batch-norm statistics."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
    from safetensors_np import write_safetensors
    g = np.random.default_rng(3)
    tensors, cin = {}, 1
    for i, (out, k) in enumerate(((32, 64), (64, 32), (128, 16), (256, 8)), start=1):
        tensors[f"conv{i}.weight"] = (g.standard_normal((out, cin, k)) / np.sqrt(cin * k)).astype(np.float32)
        tensors[f"conv{i}.bias"] = np.zeros(out, np.float32)
        for name, v in (("weight", 1), ("bias", 0), ("running_mean", 0), ("running_var", 1)):
            tensors[f"bn{i}.{name}"] = np.full(out, v, np.float32)
        cin = out
    for head, classes in (("objects", 1000), ("scenes", 401)):
        tensors[f"conv5_{head}.weight"] = (g.standard_normal((classes, 256, 16)) / 64).astype(np.float32)
        tensors[f"conv5_{head}.bias"] = np.zeros(classes, np.float32)
    write_safetensors(path, tensors, {"architecture": "soundnet5"})


def check_extract(args, clips, bad):
    """soundnet-extract on audio files equals decode + tile + --input-npy; --pool; bad files."""
    w = os.path.join(args.workdir, "extract")
    os.makedirs(w, exist_ok=True)
    weights = os.path.join(w, "soundnet5.safetensors")
    soundnet5_weights(weights)
    common = [args.extract, "--arch", "soundnet5", "--weights", weights]
    p = subprocess.run(common + ["--tile-to", "10", "--out", os.path.join(w, "per-file"), *clips],
                       capture_output=True, text=True)
    ok, detail = p.returncode == 0, p.stderr.strip()
    for clip in clips:  # the same through the waveform path: decode, tile to 10 s in numpy
        name = os.path.basename(clip)
        subprocess.run([args.decode, "--out-dir", os.path.join(w, "waves"), clip], check=True)
        wave = np.load(os.path.join(w, "waves", name + ".npy"))
        tiled = np.resize(wave, max(len(wave), 220500)).astype(np.float32)  # circular repetition
        np.save(os.path.join(w, "tiled.npy"), tiled)
        subprocess.run(common + ["--input-npy", os.path.join(w, "tiled.npy"), "--layer", "pool3", "--out",
                                 os.path.join(w, "ref.npy")], check=True)
        ours_path = os.path.join(w, "per-file", name + ".npy")
        ok = ok and os.path.exists(ours_path) and np.array_equal(np.load(ours_path), np.load(os.path.join(w, "ref.npy")))
    check("extract audio files (default layer pool3, --tile-to 10) equals decode + tile + --input-npy", ok, detail)
    # Many small chunks (also run under AddressSanitizer in CI): the same features
    p = subprocess.run(common + ["--tile-to", "30", "--chunk-seconds", "1", "--all-layers", "--out",
                                 os.path.join(w, "chunked"), clips[0]], capture_output=True, text=True)
    q = subprocess.run(common + ["--tile-to", "30", "--chunk-seconds", "60", "--all-layers", "--out",
                                 os.path.join(w, "one-chunk"), clips[0]], capture_output=True, text=True)
    name = os.path.basename(clips[0])
    worst, count = 0.0, 0
    for ref_path in sorted(glob.glob(os.path.join(w, "one-chunk", name, "*.npy"))):
        ref = np.load(ref_path)
        ours = np.load(os.path.join(w, "chunked", name, os.path.basename(ref_path)))
        worst = max(worst, float(np.abs(ours - ref).max() / max(1.0, np.abs(ref).max())) if ours.shape == ref.shape else np.inf)
        count += 1
    check("extract --chunk-seconds 1 (30 s, every read-out) equals one chunk", p.returncode == 0 and q.returncode == 0
          and count == 17 and worst <= 1e-5, f"{count} read-outs, largest difference {worst:.2e}; {p.stderr.strip()}")

    listing = os.path.join(w, "list.txt")
    open(listing, "w").write(f"{clips[1]}\n# a comment\n{os.path.join(bad, 'missing.ogg')}\n")
    p = subprocess.run(common + ["--tile-to", "10", "--pool", "mean", "--out", os.path.join(w, "mean.npy"),
                                 "--list", listing, clips[0], os.path.join(bad, "text.wav")],
                       capture_output=True, text=True)
    rows = open(os.path.join(w, "mean.npy.txt")).read().split() if os.path.exists(os.path.join(w, "mean.npy.txt")) else []
    matrix = np.load(os.path.join(w, "mean.npy")) if os.path.exists(os.path.join(w, "mean.npy")) else np.zeros((0, 0))
    expect = np.stack([np.load(os.path.join(w, "per-file", os.path.basename(c) + ".npy")).mean(1) for c in (clips[0], clips[1])])
    check("extract --pool mean: one row per good file, names in .txt, bad files reported, exit 1",
          p.returncode == 1 and rows == [clips[0], clips[1]] and matrix.shape == (2, 128)
          and np.allclose(matrix, expect, rtol=1e-5, atol=1e-6) and "missing.ogg" in p.stderr
          and "text.wav" in p.stderr and "2 of 4 inputs failed" in p.stderr, p.stderr.strip())
    p = subprocess.run(common + ["--tile-to", "10", "--pool", "max", "--out", os.path.join(w, "max.npy"), clips[0]],
                       capture_output=True, text=True)
    check("extract --pool max is the maximum over time", p.returncode == 0 and np.array_equal(
        np.load(os.path.join(w, "max.npy"))[0], np.load(os.path.join(w, "per-file", os.path.basename(clips[0]) + ".npy")).max(1)))
    p = subprocess.run(common + ["--pool", "median", "--out", os.path.join(w, "x.npy"), clips[0]], capture_output=True, text=True)
    check("extract --pool median is refused", p.returncode == 2 and "--pool: median not in {mean,max}" in p.stderr)


def wav_header_only(path, rate, channels, samples=2000):
    """A 16-bit PCM WAV file whose header claims `rate` Hz and `channels` channels."""
    data = (np.sin(np.arange(samples * channels) * 0.05) * 10000).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * channels * 2) & 0xFFFFFFFF, channels * 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    open(path, "wb").write(b"RIFF" + struct.pack("<I", len(body)) + body)


def check_format_change(args, w):
    """A stream whose channel count and rate change midway (MPEG-TS pieces, as broadcast streams
    switch between stereo and mono) is decoded whole: the first part as that piece alone, the
    rest as the second piece alone (up to where the resampler restarts); and headers claiming
    absurd rates or channel counts are refused before anything is sized by them."""
    d = os.path.join(w, "format-change")
    os.makedirs(d, exist_ok=True)
    pieces = [("stereo-44k.ts", 440, 44100, 2), ("mono-32k.ts", 660, 32000, 1)]
    for name, freq, rate, channels in pieces:
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                        f"sine=frequency={freq}:sample_rate={rate}:duration=2", "-ac", str(channels), "-c:a", "mp2",
                        os.path.join(d, name)], check=True)
    joined = os.path.join(d, "stereo-then-mono.ts")
    with open(joined, "wb") as out:
        for name, *_ in pieces:
            out.write(open(os.path.join(d, name), "rb").read())
    out_dir = os.path.join(d, "out")
    p = subprocess.run([args.decode, "--out-dir", out_dir, joined] + [os.path.join(d, n) for n, *_ in pieces],
                       capture_output=True, text=True)
    ok = p.returncode == 0
    check("decode: a stream switching from stereo 44.1 kHz to mono 32 kHz midway is decoded", ok,
          f"exit {p.returncode}: {p.stderr.strip()[-300:]}")
    if ok:
        whole, first, second = (np.load(os.path.join(out_dir, n + ".npy"))
                                for n in ["stereo-then-mono.ts"] + [n for n, *_ in pieces])
        check("decode: its stereo part is the stereo piece decoded alone, sample for sample",
              np.array_equal(whole[:len(first) - 1000], first[:len(first) - 1000]))
        # The mono part: the second piece decoded alone, at the shift where the first resampler's
        # flush ends (a few hundred samples at most), within 1% of its peak.
        ref = second[1000:len(second) - 1000]
        best = min((float(np.abs(whole[len(first) + s + 1000:len(first) + s + 1000 + len(ref)] - ref).max()), s)
                   for s in range(-400, 401) if len(first) + s + 1000 + len(ref) <= len(whole))
        peak = float(np.abs(ref).max())
        check("decode: its mono part is the mono piece decoded alone", best[0] < 0.01 * peak,
              f"max difference {best[0]:.4f} (peak {peak:.2f}) at a shift of {best[1]} samples")
        check("decode: its length is the pieces' lengths together", abs(len(whole) - len(first) - len(second)) < 500,
              f"{len(whole)} vs {len(first)} + {len(second)}")
    odd = {"rate-2e28.wav": ((1 << 28), 1, "unsupported audio sample rate 268435456 Hz"),
           "rate-10.wav": (10, 1, "unsupported audio sample rate 10 Hz"),
           "channels-200.wav": (22050, 200, "unsupported audio channel count 200")}
    for name, (rate, channels, _) in odd.items():
        wav_header_only(os.path.join(d, name), rate, channels)
    p = subprocess.run([args.decode, "--out-dir", out_dir] + [os.path.join(d, n) for n in odd],
                       capture_output=True, text=True)
    for name, (_, _, reason) in odd.items():
        line = next((x for x in p.stderr.splitlines() if os.path.join(d, name) in x), "")
        check(f"decode: a header claiming {name[:-4]} is refused", reason in line and p.returncode == 1,
              line or "(no message)")


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--decode", required=True)
    a.add_argument("--extract", required=True)
    a.add_argument("--shared", required=True)
    a.add_argument("--workdir", required=True)
    args = a.parse_args()
    if not shutil.which("ffmpeg"):
        print("SKIPPED: the ffmpeg program (Debian package ffmpeg) is not installed")
        return 77
    data = os.path.join(args.shared, "data")
    if not os.path.isdir(data):
        print(f"SKIPPED: {data} is not there (the shared reference material is absent)")
        return 77
    w = args.workdir
    os.makedirs(w, exist_ok=True)

    groups = {
        "esc10-ogg-44k": sorted(glob.glob(os.path.join(data, "esc10", "audio-44k-ogg", "*.ogg"))),
        "esc10-mp3-22k": sorted(glob.glob(os.path.join(data, "esc10", "audio-22k-mp3", "*.mp3"))),
        "video": sorted(glob.glob(os.path.join(data, "video", "*", "*.mp4")) +
                        glob.glob(os.path.join(data, "video", "*", "*.webm")) +
                        glob.glob(os.path.join(data, "video", "*", "*.mkv"))),
    }
    for label, files in groups.items():
        check(f"decode {label}: clips present", len(files) > 0, f"{len(files)} files")
        if files:
            compare_folder(args.decode, files, w, label)

    # --start / --duration: the same samples as the whole decode, sliced
    clip = groups["esc10-ogg-44k"][0]
    p = subprocess.run([args.decode, "--start", "1", "--duration", "2", "--out-dir", os.path.join(w, "range"), clip],
                       capture_output=True, text=True)
    whole = np.load(os.path.join(w, "esc10-ogg-44k", os.path.basename(clip) + ".npy"))
    part = np.load(os.path.join(w, "range", os.path.basename(clip) + ".npy")) if p.returncode == 0 else np.zeros(0)
    check("decode --start 1 --duration 2 is the slice [22050, 66150) of the whole",
          np.array_equal(part, whole[22050:66150]), f"{len(part)} samples")

    # bad input
    bad = os.path.join(w, "bad")
    os.makedirs(bad, exist_ok=True)
    raw = open(clip, "rb").read()
    mp3 = open(groups["esc10-mp3-22k"][0], "rb").read()
    files = {
        "missing.ogg": None,
        "empty.wav": b"",
        "half.ogg": raw[: len(raw) // 2],
        "half.mp3": mp3[: len(mp3) // 2],
        "header-only.ogg": raw[:100],
        "text.wav": b"this is not audio\n" * 100,
        "random.mp3": bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8)),
    }
    for name, content in files.items():
        if content is not None:
            open(os.path.join(bad, name), "wb").write(content)
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc=duration=1:size=64x64",
                    "-an", os.path.join(bad, "no-audio.mp4")], check=True)
    os.makedirs(os.path.join(bad, "a-directory"), exist_ok=True)
    inputs = [clip] + [os.path.join(bad, n) for n in list(files) + ["no-audio.mp4", "a-directory"]]
    p = subprocess.run([args.decode, "--out-dir", os.path.join(w, "bad-out"), *inputs], capture_output=True, text=True)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    expected = {"missing.ogg": "No such file", "empty.wav": "cannot open", "half.ogg": "truncated",
                "half.mp3": "truncated", "header-only.ogg": "cannot open", "text.wav": "cannot open",
                "random.mp3": "", "no-audio.mp4": "has no audio stream", "a-directory": ""}
    for name, reason in expected.items():
        line = next((x for x in lines if os.path.join(bad, name) in x), "")
        check(f"decode bad input {name}", bool(line) and reason in line, line or "(no message)")
    check("decode bad input: the good file is still decoded, exit status 1, a summary",
          p.returncode == 1 and os.path.exists(os.path.join(w, "bad-out", os.path.basename(clip) + ".npy"))
          and f"{len(expected)} of {len(inputs)} files failed" in p.stderr, f"exit {p.returncode}")
    left = sorted(set(os.listdir(os.path.join(w, "bad-out"))) - {os.path.basename(clip) + ".npy"})
    check("decode bad input: no partial output files are left", not left, ", ".join(left))

    check_format_change(args, w)
    check_extract(args, groups["esc10-ogg-44k"][:3], bad)

    passed = sum(RESULTS)
    print(f"{passed} passed, {len(RESULTS) - passed} failed")
    return 0 if passed == len(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
