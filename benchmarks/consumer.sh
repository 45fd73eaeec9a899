#!/usr/bin/env bash
# What a consumer of the installed package gets: SoundNet-8, 20 s, batch 1, 2 threads, built with
# plain Release flags and with -march=native, run alternately in rounds (medians of the rounds'
# medians), for this checkout and, optionally, for another commit (before/after).
#   bash benchmarks/consumer.sh [OTHER_COMMIT]     (writes docs/benchmarks/consumer.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${SOUNDNET_CONSUMER_WORK:-/tmp/soundnet-consumer}
rounds=${SOUNDNET_CONSUMER_ROUNDS:-7}
rm -rf "$work" && mkdir -p "$work"
build_for() {  # $1: label, $2: source tree
  cmake -S "$2" -B "$work/$1-lib" -DCMAKE_BUILD_TYPE=Release -DSOUNDNET_BUILD_TESTS=OFF -DSOUNDNET_BUILD_APPS=OFF \
        -DSOUNDNET_BUILD_EXAMPLES=OFF -DCMAKE_INSTALL_PREFIX="$work/$1-prefix" >/dev/null
  cmake --build "$work/$1-lib" -j"$(nproc)" >/dev/null
  cmake --install "$work/$1-lib" >/dev/null
  cmake -S benchmarks/consumer -B "$work/$1-consumer" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_PREFIX_PATH="$work/$1-prefix" >/dev/null
  cmake --build "$work/$1-consumer" -j"$(nproc)" >/dev/null
}
labels=(this)
build_for this "$PWD"
if [ $# -ge 1 ]; then
  git worktree add --detach "$work/other-src" "$1" >/dev/null 2>&1
  build_for other "$work/other-src"
  git worktree remove --force "$work/other-src"
  labels=(other this)
fi
out=docs/benchmarks/consumer.txt
mkdir -p docs/benchmarks
{
  echo "# SoundNet-8, 20 s, batch 1, 2 threads; median ms of 15 forwards per round, $rounds rounds alternating"
  echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; compiler: $(c++ --version | head -1)"
  [ $# -ge 1 ] && echo "# other = $1, this = $(git rev-parse --short HEAD)"
} > "$out"
for label in "${labels[@]}"; do for flavour in plain native; do : > "$work/$label-$flavour.txt"; done; done
for round in $(seq "$rounds"); do
  for label in "${labels[@]}"; do
    "$work/$label-consumer/consumer-bench" 15 2 | awk '{print $2}' >> "$work/$label-plain.txt"
    "$work/$label-consumer/consumer-bench-native" 15 2 | awk '{print $2}' >> "$work/$label-native.txt"
  done
done
median() { sort -g "$1" | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
for label in "${labels[@]}"; do
  plain=$(median "$work/$label-plain.txt"); native=$(median "$work/$label-native.txt")
  echo "$label plain_ms $plain native_ms $native plain_share_of_native_speed $(awk -v p="$plain" -v n="$native" 'BEGIN {printf "%.3f", n / p}')" >> "$out"
done
cat "$out"
