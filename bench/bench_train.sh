#!/bin/bash
# make bench-train: one epoch of the cleverhans CNN on Fashion-MNIST (batch
# 128, Adam 1e-3, eps 0.1, 2 threads) with lsr and with PyTorch, in one run,
# each in fp32 and in bf16 mixed precision (lsr --precision bf16; PyTorch
# autocast), every model evaluated in fp32 on the 10,000 test images.
# Last line: speedup-vs-torch N.NN acc-lsr 0.NNNN acc-torch 0.NNNN
# for lsr's fastest mode (bf16 when the CPU has AVX512_BF16) against
# PyTorch's default (fp32); the table has every pair.
# Each of the four trainings runs REPEATS times (default 2), the four in
# turn, and keeps its fastest epoch: this shared machine's speed drifts by
# 10-20 % over minutes, and taking turns exposes every side to the same
# drift.  The accuracies are those of the first round (the runs are seeded).
set -euo pipefail
LSR=${LSR:-build/lsr}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
THREADS=${THREADS:-2}
EPOCHS=${EPOCHS:-1}
REPEATS=${REPEATS:-2}
# Debian's PyTorch lives in /usr/bin/python3; another python3 may come first
# on the PATH (pyenv, conda) without it.  PYTHON overrides.
PY=${PYTHON:-/usr/bin/python3}
"$PY" -c 'import torch' 2>/dev/null ||
    { echo "bench_train.sh: $PY cannot import torch (install python3-torch, or set PYTHON to an interpreter that has it)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# lsr_run PRECISION -> "seconds_per_epoch accuracy", or nothing when the
# precision is not available here
lsr_run() {
    "$LSR" train --data "$DATA" --model cleverhans-cnn --epochs "$EPOCHS" --batch 128 --lr 1e-3 \
        --optimizer adam --smoothing 0.1 --threads "$THREADS" --seed 0 --quiet --precision "$1" \
        --out "$tmp/$1.safetensors" --metrics "$tmp/$1.jsonl" >/dev/null 2>"$tmp/$1.err" ||
        { echo "lsr --precision $1: $(cat "$tmp/$1.err")" >&2; return 0; }
    "$PY" -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(sum(x['seconds'] for x in r)/len(r))" "$tmp/$1.jsonl"
    "$LSR" eval --model "$tmp/$1.safetensors" --data "$DATA" --threads "$THREADS" --json |
        "$PY" -c "import json,sys; print(json.load(sys.stdin)['accuracy'])"
}
# fastest OLD NEW: the smaller of two times (OLD may be empty)
fastest() { "$PY" -c "import sys; print(min(float(v) for v in sys.argv[1:] if v))" "$@"; }
# the kernels each side runs: lsr's GEMMs and loss, PyTorch's BLAS and oneDNN
echo "environment: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, $THREADS threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
"$LSR" --version | sed -n 's/^/lsr: /p' | grep -v '^lsr: lsr '
"$PY" -c "
import re, torch
cfg = torch.__config__.show()
dnn = re.search(r'MKL-DNN (v[0-9.]+)', cfg)
cap = re.search(r'CPU capability usage: (\\w+)', cfg)
blas = re.search(r'BLAS_INFO=(\\w+)', cfg)
print('pytorch: %s; fp32 convolutions by %s; its own kernels for %s; BLAS %s (libblas.so.3, Debian alternatives)' % (
    torch.__version__,
    'oneDNN ' + dnn.group(1) if dnn and torch.backends.mkldnn.is_available() else 'its im2col + BLAS',
    cap.group(1) if cap else 'an unknown ISA', blas.group(1) if blas else 'unknown'))
"
for round in $(seq "$REPEATS"); do
    read -r -d '' s acc < <(lsr_run fp32) || true
    [ "$round" = 1 ] && lsr32_acc=$acc
    lsr32_s=$(fastest "${lsr32_s:-}" "$s")
    read -r -d '' s acc < <(lsr_run bf16) || true
    if [ -n "$s" ]; then
        [ "$round" = 1 ] && lsr16_acc=$acc
        lsr16_s=$(fastest "${lsr16_s:-}" "$s")
    fi
    read -r s acc < <("$PY" bench/torch_train.py "$DATA" "$THREADS" "$EPOCHS" 0.1 all)
    [ "$round" = 1 ] && torch32_acc=$acc
    torch32_s=$(fastest "${torch32_s:-}" "$s")
    read -r s acc < <("$PY" bench/torch_train.py "$DATA" "$THREADS" "$EPOCHS" 0.1 all bf16)
    [ "$round" = 1 ] && torch16_acc=$acc
    torch16_s=$(fastest "${torch16_s:-}" "$s")
    echo "round $round: lsr fp32 $lsr32_s, lsr bf16 ${lsr16_s:-n/a}, pytorch fp32 $torch32_s, pytorch bf16 $torch16_s (fastest so far)" >&2
done
printf "%-14s %10s %10s %16s %16s\n" "" "s/epoch" "test acc" "vs torch fp32" "vs torch bf16"
row() { # name seconds accuracy
    [ -n "$2" ] || { printf "%-14s %10s\n" "$1" "n/a"; return; }
    "$PY" -c "import sys; n,s,a,t,u=sys.argv[1:]; s,t,u=float(s),float(t),float(u); print('%-14s %10.2f %10.4f %15.2fx %15.2fx' % (n, s, float(a), t/s, u/s))" \
        "$1" "$2" "$3" "$torch32_s" "$torch16_s"
}
row "lsr fp32" "$lsr32_s" "$lsr32_acc"
row "lsr bf16" "${lsr16_s:-}" "${lsr16_acc:-}"
row "pytorch fp32" "$torch32_s" "$torch32_acc"
row "pytorch bf16" "$torch16_s" "$torch16_acc"
best_s=${lsr16_s:-$lsr32_s}
best_acc=${lsr16_acc:-$lsr32_acc}
"$PY" -c "import sys; l,t,a,b=map(float,sys.argv[1:]); print('speedup-vs-torch %.2f acc-lsr %.4f acc-torch %.4f' % (t/l, a, b))" \
    "$best_s" "$torch32_s" "$best_acc" "$torch32_acc"
