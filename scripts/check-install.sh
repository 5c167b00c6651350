#!/bin/bash
# scripts/check-install.sh BUILD_DIR
#
# Installs a build of lsr into a temporary prefix (cmake --install, as
# `make install PREFIX=` does) and checks it as a user of the library sees it:
#   - the prefix holds liblsr.a, liblsr.so, lsr/loss.h, lsr/train.h and lsr.pc;
#   - liblsr.so exports functions named lsr_* only (not lsr__*), and every
#     function that the installed headers declare LSR_API;
#   - examples/loss.c and examples/train.c compile against the installed
#     headers and link with `pkg-config --cflags --libs lsr` (liblsr.so) and
#     with `pkg-config --static --cflags --libs lsr` (liblsr.a, from a copy of
#     the prefix without the shared library: the .pc is relocatable);
#   - each program runs: loss checks itself against the reference, train
#     trains an MLP on Fashion-MNIST for an epoch and needs 0.80 test accuracy.
# Nothing is compiled against the source tree's include/ or the build
# directory.  Runs every check, then exits 1 if any failed.  CC: the compiler
# (cc).  What installs is brought up to date first (cmake --build).
set -euo pipefail
if [ $# -ne 1 ] || [ ! -f "$1/CMakeCache.txt" ]; then
    echo "usage: $0 BUILD_DIR (a configured CMake build of lsr)" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
cc=${CC:-cc}
work=$(mktemp -d "${TMPDIR:-/tmp}/lsr-check-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
# only what pkg-config says: no include or library paths from the environment
unset CPATH C_INCLUDE_PATH LIBRARY_PATH LD_LIBRARY_PATH

failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
run() { # run CMD...: prints and runs it; a failure is counted
    echo "+ $*"
    local rc=0
    "$@" || rc=$?
    [ "$rc" -eq 0 ] || fail "$* (exit $rc)"
}

echo "== install"
cmake --build "$build" -j"$(nproc)" --target lsr lsr_shared lsr_cli >/dev/null # what installs
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
pc=$(find "$prefix" -path '*/pkgconfig/lsr.pc' | head -n 1)
[ -n "$pc" ] || { echo "FAIL: no lsr.pc under $prefix" >&2; exit 1; }
pcdir=$(dirname "$pc")
libdir=$(dirname "$pcdir")
for f in "$libdir/liblsr.a" "$libdir/liblsr.so" "$prefix/include/lsr/loss.h" \
    "$prefix/include/lsr/train.h" "$pc"; do
    if [ -e "$f" ]; then echo "installed ${f#"$prefix"/}"; else fail "not installed: $f"; fi
done

# the same prefix without liblsr.so, so that -llsr is liblsr.a
static=$work/static
cp -a "$prefix" "$static"
slibdir=$static/${libdir#"$prefix"/}
rm -f "$slibdir"/liblsr.so*

pkg() { PKG_CONFIG_PATH="$1" pkg-config "${@:2}" lsr; }
flags_shared=$(pkg "$pcdir" --cflags --libs)
flags_static=$(pkg "$slibdir/pkgconfig" --static --cflags --libs)
echo "pkg-config --cflags --libs lsr:          $flags_shared"
echo "pkg-config --static --cflags --libs lsr: $flags_static"
for f in "$flags_shared" "$flags_static"; do
    case "$f" in *"$src"* | *"$build"*) fail "pkg-config names the source or build tree: $f" ;; esac
done

echo "== symbols exported by liblsr.so"
# nm -D: "ADDRESS TYPE NAME"; T: functions (text)
exported=$(nm -D --defined-only "$libdir/liblsr.so" | awk 'NF == 3 {print $2, $3}')
echo "$exported" | awk '$1 == "T" || $1 == "W" || $1 == "i" {print "  " $1, $2}'
count=$(echo "$exported" | grep -c . || true)
echo "$count exported symbols"
bad=$(echo "$exported" | awk '$2 !~ /^lsr_/ || $2 ~ /^lsr__/ {print "  " $1, $2}')
[ -z "$bad" ] || fail "liblsr.so exports symbols that are not lsr_* (or are lsr__*):
$bad"
# every function the installed headers declare LSR_API
declared=$(grep -h '^LSR_API ' "$prefix"/include/lsr/*.h |
    sed -E 's/\(.*//; s/.*[^A-Za-z0-9_]([A-Za-z_][A-Za-z0-9_]*)$/\1/' | sort -u)
missing=$(comm -23 <(echo "$declared") <(echo "$exported" | awk '{print $2}' | sort -u))
echo "$(echo "$declared" | grep -c .) functions declared LSR_API in include/lsr"
[ -z "$missing" ] ||
    fail "declared LSR_API but not exported by liblsr.so:" "$(echo "$missing" | tr '\n' ' ')"

echo "== examples against the installed lsr"
cp "$src/examples/loss.c" "$src/examples/train.c" "$work/"
cd "$work"
warn="-std=c11 -Wall -Wextra -Wpedantic -Werror"
for ex in loss train; do
    # shellcheck disable=SC2086 # the flags are words
    run "$cc" $warn -o "$ex-shared" "$ex.c" $flags_shared -lm
    # shellcheck disable=SC2086
    run "$cc" $warn -o "$ex-static" "$ex.c" $flags_static -lm
done
for p in loss-shared train-shared; do
    [ -x "$p" ] || continue
    readelf -d "$p" | grep -q 'NEEDED.*\[liblsr\.so' || fail "$p does not load liblsr.so"
done
for p in loss-static train-static; do
    [ -x "$p" ] || continue
    ! readelf -d "$p" | grep -q 'NEEDED.*\[liblsr\.so' || fail "$p loads liblsr.so"
done
if [ -x loss-shared ]; then run env LD_LIBRARY_PATH="$libdir" ./loss-shared; fi
if [ -x loss-static ]; then run ./loss-static; fi
if [ -x train-shared ]; then
    run env LD_LIBRARY_PATH="$libdir" ./train-shared "$work/mlp-shared.safetensors"
fi
if [ -x train-static ]; then run ./train-static "$work/mlp-static.safetensors"; fi

if [ "$failures" -ne 0 ]; then
    echo "check-install: $failures check(s) failed" >&2
    exit 1
fi
echo "check-install: all checks passed"
