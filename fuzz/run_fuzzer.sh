#!/usr/bin/env bash
# Runs one fuzz target: first every regression input (each once; any finding fails), then
# fuzzing for SECONDS from the seeds and the corpus grown by earlier runs.
#   run_fuzzer.sh TARGET_BINARY SECONDS WORK_DIR REGRESSIONS_DIR SEEDS_DIR [SEED]
# SEED 0 (the default) lets libFuzzer draw one: open-ended fuzzing. A fixed SEED repeats the same
# sequence of inputs from the same seeds and corpus (CI uses 1: a repeatable check whose inputs
# were fuzzed for longer before the commit; docs/reliability.md).
# Allocations over 1 GiB, or 2 GiB resident, count as findings. The last lines printed are
# libFuzzer's statistics (executions, corpus size).
set -euo pipefail
binary=$1 seconds=$2 work=$3 regressions=$4 seeds=$5 seed=${6:-0}
name=$(basename "$binary")
mkdir -p "$work/corpus" "$work/artifacts"
limits=(-malloc_limit_mb=1024 -rss_limit_mb=2048 -timeout=20)
if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions" 2>/dev/null)" ]; then
  echo "$name: replaying $(ls "$regressions" | wc -l) regression input(s)"
  if ! "$binary" "${limits[@]}" "$regressions"/* > "$work/regressions.log" 2>&1; then
    tail -n 60 "$work/regressions.log"
    echo "$name: a regression input fails again"
    exit 1
  fi
fi
seed_dir="$seeds/$name"
[ -d "$seed_dir" ] || { echo "$name: no seeds in $seed_dir"; exit 1; }
echo "$name: fuzzing for $seconds s from $(ls "$seed_dir" | wc -l) seed(s)$([ "$seed" != 0 ] && echo ", random seed $seed")"
set +e
"$binary" "${limits[@]}" -seed="$seed" -max_total_time="$seconds" -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" "$work/corpus" "$seed_dir" > "$work/fuzz.log" 2>&1
status=$?
set -e
grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)" "$work/fuzz.log" || true
if [ "$status" -ne 0 ]; then
  tail -n 80 "$work/fuzz.log"
  echo "$name: FINDING (exit $status); the input is in $work/artifacts/"
  exit 1
fi
echo "$name: no findings"
