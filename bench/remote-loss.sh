#!/bin/bash
# The loss benchmark on another machine, from one command and with nothing
# but a C compiler with OpenMP (and, for the PyTorch columns, a python3 with
# torch; its torch.compile column where that works):
#
#   bench/remote-loss.sh [BUILD_DIR] [bench_loss arguments...]
#
# builds the loss library's sources and bench_loss with plain gcc (no CMake,
# no Debian packages, no network) into BUILD_DIR (default build-remote) and
# runs bench_loss --threads 1,2,all (one table per thread count, each pinned
# to its cores) unless other arguments are given.  CC and PYTHON override
# the compiler and the interpreter; without torch the PyTorch columns are
# left out (--no-torch).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/build-remote}"
[ $# -gt 0 ] && shift
mkdir -p "$out"
cc="${CC:-gcc}"
py="${PYTHON:-python3}"
flags=(-O3 -DNDEBUG -std=c11 -fopenmp -I"$root/include")
defs=()
srcs=(validate.c loss_reference.c loss_fast.c kernel_scalar.c)
objs=()
compile() { # source extra-flags...
    local src="$1"
    shift
    local obj="$out/$(basename "${src%.c}").o"
    "$cc" "${flags[@]}" ${defs[@]+"${defs[@]}"} "$@" -c "$root/src/loss/$src" -o "$obj"
    objs+=("$obj")
}
case "$(uname -m)" in
x86_64 | amd64)
    defs+=(-DLSR_HAVE_X86_KERNELS)
    if echo 'int main(void){return 0;}' | "$cc" -mavx512bf16 -x c - -o /dev/null 2>/dev/null; then
        defs+=(-DLSR_HAVE_AVX512BF16_KERNELS)
        compile kernel_avx512bf16.c -mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx512bf16 -mfma
    fi
    compile kernel_avx2.c -mavx2 -mfma
    compile kernel_avx512.c -mavx512f -mavx512dq -mfma
    ;;
esac
for src in "${srcs[@]}"; do
    compile "$src"
done
"$cc" "${flags[@]}" -DLSR_BENCH_DIR="\"$root/bench\"" "$root/bench/bench_loss.c" "${objs[@]}" \
    -lm -o "$out/bench_loss"
echo "== $("$cc" --version | head -1); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--threads 1,2,all)
if ! PYTHON="$py" "$py" -c 'import torch' >/dev/null 2>&1; then
    echo "== $py has no torch: the PyTorch columns are left out"
    args+=(--no-torch)
else
    echo "== PyTorch $("$py" -c 'import torch; print(torch.__version__)')"
fi
PYTHON="$py" exec "$out/bench_loss" "${args[@]}"
