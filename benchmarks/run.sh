#!/usr/bin/env bash
# Runs the benchmark suite and writes docs/benchmarks/{results.json,results.txt,memory.jsonl,speed.png}.
#   bash benchmarks/run.sh            (needs libtorch-dev and python3-matplotlib)
# Timings: soundnet and LibTorch alternate repeat by repeat in one process (medians).
# Memory: each implementation runs one 20 s inference in a process of its own (peak RSS).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SOUNDNET_BENCH_BUILD:-build-bench}
threads=${SOUNDNET_BENCH_THREADS:-2}
repeats=${SOUNDNET_BENCH_REPEATS:-9}
out=docs/benchmarks
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DSOUNDNET_BUILD_BENCHMARKS=ON -DSOUNDNET_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target soundnet-bench >/dev/null
mkdir -p "$out"
bench="$build/benchmarks/soundnet-bench"
"$bench" --threads "$threads" --repeats "$repeats" --json "$out/results.json" | tee "$out/results.txt"
: > "$out/memory.jsonl"
for run in 1 2 3; do
  for impl in ours libtorch; do "$bench" --threads "$threads" --memory infer8_b1 --impl "$impl" >> "$out/memory.jsonl"; done
done
cat "$out/memory.jsonl"
py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3  # Debian's python3-matplotlib
"$py" benchmarks/plot.py "$out/results.json" "$out/memory.jsonl" "$out/speed.png"
{ echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB";
  echo "compiler: $(c++ --version | head -1)"; echo "date: $(date -u +%Y-%m-%d)"; } > "$out/machine.txt"
cat "$out/machine.txt"
