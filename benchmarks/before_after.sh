#!/usr/bin/env bash
# soundnet-bench of this checkout and of another commit, alternately in rounds on the same
# machine (both built as benchmarks/run.sh builds them: Release, -march=native), so that a
# change is measured against its own "before" in one run. Prints, per case, the median over the
# rounds of each build's median, and the ratio.
#   bash benchmarks/before_after.sh COMMIT [CASES]      (default cases: infer8_b1,infer5_b1,train8_b8)
set -euo pipefail
cd "$(dirname "$0")/.."
other=$1
cases=${2:-infer8_b1,infer5_b1,train8_b8}
rounds=${SOUNDNET_BENCH_ROUNDS:-5}
work=${SOUNDNET_BENCH_WORK:-/tmp/soundnet-before-after}
rm -rf "$work" && mkdir -p "$work"
git worktree add --detach "$work/other-src" "$other" >/dev/null 2>&1
for side in this other; do
  src=$PWD; [ "$side" = other ] && src="$work/other-src"
  cmake -S "$src" -B "$work/$side" -DCMAKE_BUILD_TYPE=Release -DSOUNDNET_BUILD_BENCHMARKS=ON -DSOUNDNET_BUILD_TESTS=OFF \
        -DSOUNDNET_BUILD_EXAMPLES=OFF -DSOUNDNET_BUILD_APPS=OFF >/dev/null 2>&1
  cmake --build "$work/$side" -j"$(nproc)" --target soundnet-bench >/dev/null
done
git worktree remove --force "$work/other-src"
for round in $(seq "$rounds"); do
  for side in other this; do
    "$work/$side/benchmarks/soundnet-bench" --threads 2 --repeats 5 --cases "$cases" 2>/dev/null |
      awk -v side="$side" 'NR > 1 && NF >= 3 {print side, $1, $2, $3}' >> "$work/rounds.txt"
  done
done
echo "# $rounds rounds alternating; other = $other, this = $(git rev-parse --short HEAD); medians of the rounds' medians (ms)"
echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
printf "%-14s %10s %10s %8s %14s %14s\n" case other this ratio "LibTorch(o)" "LibTorch(t)"
for c in $(awk '{print $2}' "$work/rounds.txt" | sort -u); do
  med() { awk -v s="$1" -v c="$c" -v col="$2" '$1 == s && $2 == c {print $col}' "$work/rounds.txt" | sort -g |
          awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
  o=$(med other 3); t=$(med this 3); lo=$(med other 4); lt=$(med this 4)
  printf "%-14s %10.2f %10.2f %7.2fx %14.2f %14.2f\n" "$c" "$o" "$t" "$(awk -v a="$o" -v b="$t" 'BEGIN {print a / b}')" "$lo" "$lt"
done
