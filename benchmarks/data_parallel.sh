#!/usr/bin/env bash
# Data-parallel training on this machine's CPU: the median step time of one process and of 2 MPI
# ranks on the same global batch (SoundNet-8, 10 s crops, synthetic store written by numpy), and
# the part of a step the all-reduces take. Runs are interleaved in rounds so that each
# configuration sees the same state of a shared machine.
#   bash benchmarks/data_parallel.sh [BUILD_DIR]     (writes docs/scaling/cpu-batchB.txt)
# BUILD_DIR: a Release build with soundnet::distributed (default: build).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
train="$build/apps/soundnet-train"
rounds=${SOUNDNET_DP_ROUNDS:-3}
steps=${SOUNDNET_DP_STEPS:-12}
batch=${SOUNDNET_DP_BATCH:-8}
work=${SOUNDNET_DP_WORK:-/tmp/soundnet-data-parallel}
[ -x "$train" ] || { echo "no $train: build first (cmake -S . -B $build && cmake --build $build)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "mpirun is missing (Debian: openmpi-bin)" >&2; exit 1; }
python=""
for p in ${PYTHON:-} python3 /usr/bin/python3; do
  if "$p" -c "import numpy" 2>/dev/null; then python=$p; break; fi
done
[ -n "$python" ] || { echo "no python3 with numpy (Debian: python3-numpy); or set PYTHON" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
rm -rf "$work" && mkdir -p "$work"
"$python" - "$work/store" <<'PY'
import sys, numpy as np
sys.path.insert(0, "tests/cli")
from store_writer import make_video, write_store
rng = np.random.default_rng(1)
write_store(sys.argv[1], [("objects", 1000), ("scenes", 365)],
            [make_video(rng, f"v{i}.mp4", 12 + i, [(1000, 10 * i), (365, 7 * i)]) for i in range(16)])
PY
common=(--arch soundnet8 --dataset "$work/store" --crop-seconds 10 --batch-size "$batch" --steps "$steps"
        --validation-videos 0 --seed 1 --save "$work/out.safetensors")
run() {  # $1: label; the rest: the command
  local label=$1; shift
  "$@" > "$work/$label.out" 2> "$work/$label.err" || { cat "$work/$label.err" >&2; exit 1; }
  grep -o 'median step [0-9.]* s.*' "$work/$label.err" | sed "s/^/$label: /" >> "$work/medians.txt"
}
: > "$work/medians.txt"
for r in $(seq "$rounds"); do
  run "1 process, 2 threads" "$train" "${common[@]}" --threads 2
  run "2 ranks x 1 thread, synchronised batch norm" mpirun -np 2 --bind-to core "$train" "${common[@]}" --threads 1 --sync-batch-norm
  run "2 ranks x 1 thread, batch norm per rank" mpirun -np 2 --bind-to core "$train" "${common[@]}" --threads 1
done
out=docs/scaling/cpu-batch$batch.txt
mkdir -p docs/scaling
"$python" - "$work/medians.txt" "$out" "$batch" "$steps" "$rounds" <<'PY'
import re, statistics, subprocess, sys
rows = {}
for line in open(sys.argv[1]):
    label, rest = line.split(": median step ", 1)
    step = float(rest.split()[0])
    m = re.search(r"all-reduces ([0-9.]+) s \((\d+) bytes", rest)
    rows.setdefault(label, []).append((step, float(m.group(1)) if m else 0.0, int(m.group(2)) if m else 0))
cpu = subprocess.run("lscpu | grep 'Model name' | sed 's/.*: *//'", shell=True, capture_output=True, text=True).stdout.strip()
with open(sys.argv[2], "w") as f:
    f.write(f"# bash benchmarks/data_parallel.sh; {cpu}, {subprocess.run('nproc', capture_output=True, text=True).stdout.strip()} cores; "
            f"SoundNet-8, 10 s crops, global batch {sys.argv[3]}, {sys.argv[4]} steps a run, medians over {sys.argv[5]} rounds\n")
    base = statistics.median(r[0] for r in rows["1 process, 2 threads"])
    for label, rs in rows.items():
        step = statistics.median(r[0] for r in rs)
        red = statistics.median(r[1] for r in rs)
        size = rs[0][2]
        f.write(f"{label:46s} step {step:.4f} s  ({base / step:.2f}x one process)"
                + (f"  all-reduces {red * 1000:.1f} ms a step ({100 * red / step:.1f}%), {size / 1e6:.1f} MB of gradients" if size else "")
                + "\n")
print(open(sys.argv[2]).read(), end="")
PY
