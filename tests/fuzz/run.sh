#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs one libFuzzer target for a bounded time: writes its seeds, then fuzzes from them and the corpus kept
# in DIR/TARGET by earlier runs. A crash, leak, timeout or sanitizer report fails (the input is kept).
# usage: run.sh FUZZER SEEDS_PROGRAM TARGET SECONDS DIR
set -eu
if [ $# -ne 5 ]; then
  echo "usage: $0 FUZZER SEEDS_PROGRAM TARGET SECONDS DIR" >&2
  exit 2
fi
fuzzer=$1
seeds_program=$2
target=$3
seconds=$4
dir=$5/$target
count() { find "$1" -type f | wc -l; }
mkdir -p "$dir/corpus" "$dir/crashes"
rm -rf "$dir/seeds"
mkdir -p "$dir/seeds"
"$seeds_program" "$target" "$dir/seeds"
echo "fuzz-$target: $(count "$dir/seeds") seeds, $(count "$dir/corpus") inputs in the corpus, $seconds s"

# New inputs go to the first folder (the corpus); the seeds are read first, every run.
# libFuzzer's own exit status for a finding is 77, which meson reads as "skipped": 1 instead.
# Leak checks between inputs are off unless SLUICE_FUZZ_LEAKS=1: with json-glib they report trees that no
# input leaks when run again on its own (a leak of sluice's own, a list kept on an error path, was found so).
leaks=${SLUICE_FUZZ_LEAKS:-0}
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=$leaks"
export ASAN_OPTIONS
log=$dir/last.log
status=0
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -detect_leaks="$leaks" -error_exitcode=1 -timeout_exitcode=1 -artifact_prefix="$dir/crashes/" \
  "$dir/corpus" "$dir/seeds" >"$log" 2>&1 || status=$?

runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
if [ "$status" -ne 0 ]; then
  tail -n 120 "$log"
  echo "fuzz-$target: FAILED (exit status $status) after ${runs:-?} runs; the input is in $dir/crashes/"
  exit 1
fi
grep -E '^#[0-9]+ +(INITED|DONE)' "$log" || true
echo "fuzz-$target: ${runs:-?} runs in $seconds s (${rate:-?} exec/s), $(count "$dir/corpus") inputs in the corpus"
