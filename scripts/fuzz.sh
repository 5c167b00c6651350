#!/bin/bash
# make fuzz SECONDS=N: every libFuzzer harness for N seconds, from the
# committed seed corpus (fuzz/corpus/NAME); the regression inputs in
# fuzz/regressions/NAME run first.  Prints executions per harness and fails
# on the first crash (the crasher is left in build-fuzz/crashes).
set -euo pipefail
seconds=${1:-60}
build=${BUILD_FUZZ:-build-fuzz}
names="fuzz_idx fuzz_csv fuzz_modelfile fuzz_prior fuzz_spec fuzz_lists fuzz_loss"
mkdir -p "$build/crashes"
status=0
printf "%-16s %12s %10s\n" harness executions "exec/s"
for name in $names; do
    corpus="$build/corpus/$name"
    mkdir -p "$corpus"
    [ -d "fuzz/corpus/$name" ] && cp -n fuzz/corpus/$name/* "$corpus/" 2>/dev/null || true
    if [ -d "fuzz/regressions/$name" ] && ls fuzz/regressions/$name/* > /dev/null 2>&1; then
        "$build/$name" fuzz/regressions/$name/* > "$build/$name.regressions.log" 2>&1 ||
            { echo "$name: a regression input fails again (see $build/$name.regressions.log)"; status=1; }
    fi
    log="$build/$name.log"
    if ! OMP_NUM_THREADS=1 "$build/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
        -artifact_prefix="$build/crashes/$name-" "$corpus" > "$log" 2>&1; then
        echo "$name: FAILED, see $log and $build/crashes"
        status=1
    fi
    runs=$(grep -o 'Done [0-9]* runs' "$log" | grep -o '[0-9]*' || echo 0)
    rate=$(grep -o 'exec/s: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
    printf "%-16s %12s %10s\n" "$name" "$runs" "$rate"
done
exit $status
