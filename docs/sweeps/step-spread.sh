#!/bin/bash
# The spread of the loss across an epoch's steps, expected loss against
# resampled labels: the 40-epoch MLP at eps 0.1, seeds 0-2, each with its
# metrics file (step_loss_sd: the standard deviation of the epoch's step
# losses).  Prints one line per run and epoch: mode seed epoch loss step_loss_sd.
#   docs/sweeps/step-spread.sh LSR OUTDIR
set -eu
LSR=$1
mkdir -p "$2"
cd "$2"
for mode in expected sample; do
    for seed in 0 1 2; do
        [ -s $mode-$seed.jsonl ] && [ "$(wc -l < $mode-$seed.jsonl)" -eq 40 ] ||
            "$LSR" train --model mlp --epochs 40 --smoothing 0.1 --smoothing-mode $mode --seed $seed \
                --val 5000 --threads 1 --quiet --metrics $mode-$seed.jsonl > /dev/null
        sed -n 's/.*"epoch": \([0-9]*\),.*"loss": \([0-9.]*\),.*"step_loss_sd": \([0-9.]*\),.*/\1 \2 \3/p' \
            $mode-$seed.jsonl | while read -r epoch loss sd; do echo "$mode $seed $epoch $loss $sd"; done
    done
done
