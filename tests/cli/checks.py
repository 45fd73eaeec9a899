"""What the command-line test scripts share: the list of checks and a safetensors reader that
needs numpy alone (written from the format's description, not from the C++ code)."""
import json
import struct
import sys
import zlib

import numpy as np

failures = []


def check(cond, what):
    """Prints one check's outcome; a failed one is remembered for finish()."""
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def finish():
    """Prints the count of failed checks and exits with 1 if there was one."""
    print(f"{len(failures)} failure(s)")
    sys.exit(1 if failures else 0)


def tensors(path):
    """(tensors as float32 arrays, metadata) of a safetensors file; ValueError unless it is whole
    (its data CRC-32, where soundnet recorded one, matches, and no tensor runs past the end)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = head.pop("__metadata__", {})
    if "soundnet_data_crc32" in meta and int(meta["soundnet_data_crc32"], 16) != zlib.crc32(data):
        raise ValueError(f"{path}: CRC-32 mismatch")
    out = {}
    for k, v in head.items():
        b, e = v["data_offsets"]
        if e > len(data):
            raise ValueError(f"{path}: truncated")
        out[k] = np.frombuffer(data[b:e], "<f4")
    return out, meta
