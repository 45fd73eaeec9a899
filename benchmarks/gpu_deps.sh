#!/usr/bin/env bash
# Copies the header-only dependencies that benchmarks/gpu.sh needs into one folder (default
# .gpu-deps, ignored by git), so that they travel to a GPU machine that has CUDA, a C++
# compiler and PyTorch but no Debian -dev packages and no network. Run it here, on Debian with
# the project's packages installed (bash .ci/install-deps):
#   bash benchmarks/gpu_deps.sh [DIR]
# It holds Eigen, xtensor and xtl, nlohmann-json, CLI11, and the part of Boost that
# Boost.Test's header-only form includes (listed by the compiler itself), about 20 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.gpu-deps}
rm -rf "$dir"
mkdir -p "$dir/include/eigen3"
cp -r /usr/include/eigen3/Eigen "$dir/include/eigen3/"
for d in xtensor xtl nlohmann CLI; do cp -r "/usr/include/$d" "$dir/include/"; done
# Boost: exactly the headers test_cuda.cpp's header-only Boost.Test reaches.
g++ -std=c++17 -M -DSOUNDNET_BOOST_TEST_HEADER_ONLY -DSOUNDNET_WITH_CUDA=1 -Iinclude -Icomponents/cuda/include \
    -I/usr/include/eigen3 tests/test_cuda.cpp |
  tr ' \\' '\n\n' | grep '^/usr/include/boost/' | sort -u |
  while read -r f; do mkdir -p "$dir/include/$(dirname "${f#/usr/include/}")"; cp "$f" "$dir/include/${f#/usr/include/}"; done
echo "soundnet: header-only dependencies in $dir ($(du -sh "$dir" | cut -f1))"
