#!/bin/bash
# valgrind memcheck of the lsr command over a tiny train, eval and attack:
# zero errors and zero definite or indirect leaks, or this fails.
#   scripts/valgrind-cli.sh path/to/lsr
set -euo pipefail
LSR=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data=/usr/share/datasets/fashion-mnist
VG=(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect
    --show-leak-kinds=definite,indirect --quiet)
export OMP_NUM_THREADS=1
"${VG[@]}" "$LSR" train --data "$data" --model "conv:4:5:2:same,relu,flatten,dense:10" --train-limit 256 \
    --val 64 --epochs 1 --batch 64 --smoothing 0.1 --quiet --out "$work/m.safetensors" \
    --checkpoint "$work/m.ckpt" --metrics "$work/m.jsonl" > /dev/null
"${VG[@]}" "$LSR" calibrate --model "$work/m.safetensors" > /dev/null
"${VG[@]}" "$LSR" eval --model "$work/m.safetensors" --data "$data" --json > /dev/null
"${VG[@]}" "$LSR" attack --model "$work/m.safetensors" --data "$data" --limit 200 --json --save "$work" > /dev/null
"${VG[@]}" "$LSR" train --resume "$work/m.ckpt" --quiet > /dev/null
"${VG[@]}" "$LSR" train --frobnicate > /dev/null 2>&1 && exit 1 || [ $? -ne 99 ]
echo "valgrind: train, calibrate, eval, attack, resume and a bad flag: no errors, no leaks"
