#!/usr/bin/env bash
# Run every libFuzzer binary fuzz_* in BUILD_DIR for SECONDS each, on a scratch copy of its seed corpus
# (fuzz/corpus/<name>/), so the repository is never modified. Fails if any fuzzer reports a crash, leak,
# timeout or out-of-memory; the reproducer and log are kept and their paths printed.
#   usage: fuzz/run.sh BUILD_DIR SECONDS
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
build_dir=$1
seconds=$2
here=$(cd "$(dirname "$0")" && pwd)

shopt -s nullglob
fuzzers=()
for f in "$build_dir"/fuzz_*; do
  [[ -f $f && -x $f ]] && fuzzers+=("$f")
done
if [[ ${#fuzzers[@]} -eq 0 ]]; then
  echo "no fuzz_* binaries in $build_dir (configure with CC=clang CXX=clang++ -DTESSERA_FUZZ=ON)" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tessera-fuzz.XXXXXX")
failed=()
for bin in "${fuzzers[@]}"; do
  name=$(basename "$bin")
  corpus="$work/$name/corpus"
  artifacts="$work/$name/artifacts"
  mkdir -p "$corpus" "$artifacts"
  if [[ -d $here/corpus/$name ]]; then
    cp -r "$here/corpus/$name/." "$corpus/"
  fi
  echo "== $name: ${seconds}s"
  if "$bin" "$corpus" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=25 -print_final_stats=1 \
      -artifact_prefix="$artifacts/" >"$work/$name/log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^Done' "$work/$name/log" | tail -2 || true
  else
    failed+=("$name")
    echo "!! $name FAILED; log: $work/$name/log; reproducers:" >&2
    ls "$artifacts" >&2 || true
    grep -E 'ERROR|SUMMARY|terminate|what\(\)' "$work/$name/log" | head -20 >&2 || true
  fi
done

if [[ ${#failed[@]} -ne 0 ]]; then
  echo "fuzzing found problems in: ${failed[*]} (work dir kept: $work)" >&2
  exit 1
fi
rm -rf "$work"
echo "all ${#fuzzers[@]} fuzzers ran ${seconds}s each without a crash"
