#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS seconds each, then reports.
#
#   fuzz/run.sh SECONDS [TARGET...]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
#
# Each target reads two corpus directories: first a scratch one, fuzz/target/corpus/<target>
# (git-ignored; libFuzzer writes every new input there and it persists between local runs), then
# the committed seeds, fuzz/corpus/<target>, which libFuzzer only reads. A failing input is saved
# under fuzz/artifacts/<target>/ (also git-ignored); see fuzz/README.md for turning it into a
# regression test.
#
# Environment:
#   FUZZ_SANITIZER  none (default) or address: the crates are safe Rust, and without a sanitized
#                   std ASan only adds cost, but it is one variable away.
#   FUZZ_TOOLCHAIN  the toolchain to build with (default nightly).
set -euo pipefail
cd "$(dirname "$0")"

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi
seconds=$1
shift

toolchain=${FUZZ_TOOLCHAIN:-nightly}
# Under ASan, the bundled SQLite that desk_api links (through kefu-connector) is compiled by the C
# compiler with its own ASan globals, and two function-local statics of the same name trip the
# one-definition-rule check at start-up: a false positive, so that check is off.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}
flags=(--sanitizer "${FUZZ_SANITIZER:-none}" --debug-assertions)
cargo=(cargo "+$toolchain" fuzz)

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <("${cargo[@]}" list)
fi

echo "fuzz: building the targets (${flags[*]}), then running ${#targets[@]} for ${seconds} s each"
"${cargo[@]}" build "${flags[@]}"

mkdir -p target/logs
failed=()
for target in "${targets[@]}"; do
    scratch=target/corpus/$target
    mkdir -p "$scratch"
    log=target/logs/$target.log
    if "${cargo[@]}" run "${flags[@]}" "$target" "$scratch" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
        cov=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | grep -o 'cov: [0-9]*' | tail -n 1 || true)
        echo "fuzz: $target ok: ${runs:-?} runs in ${seconds}s, ${cov:-cov: ?}, scratch corpus $(find "$scratch" -type f | wc -l) files"
    else
        echo "fuzz: $target FAILED; the last lines of $log:"
        tail -n 60 "$log"
        failed+=("$target")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/)"
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets passed"
