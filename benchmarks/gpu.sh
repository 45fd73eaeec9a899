#!/usr/bin/env bash
# The prepared GPU script: on a machine with an NVIDIA GPU, CUDA (nvcc, cuBLAS), a C++ compiler
# and PyTorch, without Debian's -dev packages or a network, it builds the CUDA device, runs the
# CUDA-against-CPU tests, the benchmark and the PyTorch peer, and prints one table last.
#   bash benchmarks/gpu.sh [DEPS] [OUT]
# DEPS: the header-only dependencies made by benchmarks/gpu_deps.sh (default .gpu-deps);
# OUT: logs and JSON (default $OUT, else gpu-results). SOUNDNET_CUDA_ARCH (default native),
# SOUNDNET_GPU_REPEATS (10), SOUNDNET_GPU_BATCH (64), SOUNDNET_PEER_MODES (all the peer's modes).
# Built by hand (nvcc, then the C++ compiler) rather than by CMake: CMake's package files for
# Eigen, xtensor and Boost are not on such a machine. The exit status is the tests'. Each stage
# has a time limit (tests 150 s, benchmark 120 s, peer 180 s; both write their figures as they
# go), so the whole stays within about 8.5 minutes even when a stage hangs, and takes about 6.
set -uo pipefail
cd "$(dirname "$0")/.."
deps=$(realpath "${1:-.gpu-deps}")
out=${2:-${OUT:-gpu-results}}
mkdir -p "$out"
out=$(realpath "$out")
build=${SOUNDNET_GPU_BUILD:-build-gpu}
mkdir -p "$build"
arch=${SOUNDNET_CUDA_ARCH:-native}
repeats=${SOUNDNET_GPU_REPEATS:-10}
batch=${SOUNDNET_GPU_BATCH:-64}
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
cuda=$(dirname "$(dirname "$(readlink -f "$nvcc")")")
cxx=${CXX:-g++}
[ -d "$deps/include/eigen3" ] || { echo "gpu.sh: no dependencies in $deps: run benchmarks/gpu_deps.sh where Debian's packages are" >&2; exit 2; }
log() { echo "== $*" | tee -a "$out/gpu.log"; }
start=$(date +%s)
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; "$nvcc" --version | tail -2; "$cxx" --version | head -1; } > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

log "build ($arch)"
# OpenMP for the CPU reference of the tests, where the compiler has it
openmp=-fopenmp
echo 'int main(){}' > "$build/omp.cpp"
"$cxx" -fopenmp "$build/omp.cpp" -o "$build/omp" 2>/dev/null || { openmp=; echo "gpu.sh: no OpenMP: the CPU reference runs on one thread"; }
flags=(-std=c++17 -O3 -DNDEBUG -DSOUNDNET_WITH_CUDA=1 -Iinclude -Icomponents/cuda/include -I"$deps/include" -I"$deps/include/eigen3" -I"$cuda/include")
libs=(-L"$cuda/lib64" -lcublas -lcudart -lpthread)
"$nvcc" -std=c++17 -O3 -arch="$arch" -Icomponents/cuda/include -c components/cuda/src/backend.cu -o "$build/backend.o" -Xptxas -v \
  > "$out/nvcc.log" 2>&1 || { cat "$out/nvcc.log"; exit 1; }
pids=()
"$cxx" "${flags[@]}" $openmp -march=native -DSOUNDNET_BOOST_TEST_HEADER_ONLY tests/test_cuda.cpp "$build/backend.o" "${libs[@]}" -o "$build/test_cuda" > "$out/build_test_cuda.log" 2>&1 & pids+=($!)
"$cxx" "${flags[@]}" $openmp -march=native -DSOUNDNET_BOOST_TEST_HEADER_ONLY tests/test_cuda_indexing.cpp "$build/backend.o" "${libs[@]}" -o "$build/test_cuda_indexing" > "$out/build_test_indexing.log" 2>&1 & pids+=($!)
"$cxx" "${flags[@]}" $openmp -march=native benchmarks/gpu_bench.cpp "$build/backend.o" "${libs[@]}" -o "$build/soundnet-gpu-bench" > "$out/build_bench.log" 2>&1 & pids+=($!)
built=0
for p in "${pids[@]}"; do wait "$p" || built=1; done
if [ $built -ne 0 ]; then tail -30 "$out"/build_*.log; exit 1; fi
log "built in $(( $(date +%s) - start )) s"

log "tests"
status=0
"$build/test_cuda_indexing" --log_level=test_suite > "$out/test_cuda_indexing.log" 2>&1 || status=1
timeout 150 "$build/test_cuda" --run_test=gpu --log_level=message --report_level=short > "$out/test_cuda.log" 2>&1 || status=1
tail -n 3 "$out/test_cuda_indexing.log" "$out/test_cuda.log"
grep -E 'error' "$out/test_cuda.log" | head -20
# Boost.Test's short report says "N test cases out of M skipped" (the reason only at a higher
# log level): on the GPU machine a skipped GPU test is a failure of the set-up, not a pass
if grep -qE 'is skipped because|test cases? out of [0-9]+ skipped' "$out/test_cuda.log"; then
  status=3
  grep -E 'is skipped because|skipped' "$out/test_cuda.log"
  cuda_reason=$("$build/test_cuda" --run_test=gpu --log_level=test_suite 2>&1 | grep -m1 -E 'no CUDA GPU here|reason')
  echo "gpu.sh: the GPU tests were skipped: ${cuda_reason:-see $out/test_cuda.log}"
fi

log "benchmark"
timeout 120 "$build/soundnet-gpu-bench" --repeats "$repeats" --batch "$batch" --json "$out/ours.json" 2>&1 | tee "$out/bench.log"
log "PyTorch peer"
timeout 180 python3 benchmarks/torch_gpu_peer.py --batch "$batch" --repeats "$repeats" \
  ${SOUNDNET_PEER_MODES:+--modes "$SOUNDNET_PEER_MODES"} --json "$out/torch.json" 2>&1 | tee "$out/peer.log"
log "table ($(( $(date +%s) - start )) s in all; tests: $(case $status in 0) echo passed;; 3) echo SKIPPED;; *) echo FAILED;; esac))"
python3 benchmarks/gpu_table.py "$out/ours.json" "$out/torch.json" 2>&1 | tee "$out/table.txt"
exit $status
