#!/bin/bash
# make bench-train: one epoch of the cleverhans CNN on Fashion-MNIST (batch
# 128, Adam 1e-3, eps 0.1, 2 threads) with lsr and with PyTorch, in one run.
# Last line: speedup-vs-torch N.NN acc-lsr 0.NNNN acc-torch 0.NNNN
set -euo pipefail
LSR=${LSR:-build/lsr}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
THREADS=${THREADS:-2}
EPOCHS=${EPOCHS:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$LSR" train --data "$DATA" --model cleverhans-cnn --epochs "$EPOCHS" --batch 128 --lr 1e-3 \
    --optimizer adam --smoothing 0.1 --threads "$THREADS" --seed 0 --quiet \
    --out "$tmp/model.safetensors" --metrics "$tmp/metrics.jsonl" >/dev/null
lsr_seconds=$(python3 -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(sum(x['seconds'] for x in r)/len(r))" "$tmp/metrics.jsonl")
lsr_acc=$("$LSR" eval --model "$tmp/model.safetensors" --data "$DATA" --threads "$THREADS" --json |
    python3 -c "import json,sys; print(json.load(sys.stdin)['accuracy'])")
read -r torch_seconds torch_acc < <(/usr/bin/python3 bench/torch_train.py "$DATA" "$THREADS" "$EPOCHS" 0.1)
printf "%-8s %12s %10s\n" "" "s/epoch" "test acc"
printf "%-8s %12.2f %10.4f\n" lsr "$lsr_seconds" "$lsr_acc"
printf "%-8s %12.2f %10.4f\n" pytorch "$torch_seconds" "$torch_acc"
python3 -c "import sys; l,t,a,b=map(float,sys.argv[1:]); print('speedup-vs-torch %.2f acc-lsr %.4f acc-torch %.4f' % (t/l, a, b))" \
    "$lsr_seconds" "$torch_seconds" "$lsr_acc" "$torch_acc"
