#!/bin/bash
# Knowledge distillation from teachers of equal accuracy: MLP teachers with
# eps 0, 0.1, 0.2 (seed 100, 5000 training images held out), each stopped at
# the epoch (of 1-20) whose validation accuracy is nearest to a common target
# (the lowest of the three runs' best validation accuracies); narrow students
# (flatten,dense:32,relu,dense:10) distilled from each at T = 1, 2, 4 with
# A = 0.7, 5 epochs, seeds 0-2, and without a teacher.  Prints the teachers'
# epochs and accuracies, then one line per student: teacher_eps T seed accuracy.
#   docs/sweeps/distill-matched.sh LSR OUTDIR
set -eu
LSR=$1
mkdir -p "$2"
cd "$2"
accuracy() { "$LSR" eval --model "$1" --json | sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p'; }
TEACHER=(train --model mlp --seed 100 --val 5000 --threads 1 --quiet)
for e in 0 0.1 0.2; do
    [ -s probe-$e.jsonl ] && [ "$(wc -l < probe-$e.jsonl)" -eq 20 ] ||
        "$LSR" "${TEACHER[@]}" --epochs 20 --smoothing $e --metrics probe-$e.jsonl > /dev/null
done
target=$(for e in 0 0.1 0.2; do
    sed -n 's/.*"val_accuracy": \([0-9.]*\).*/\1/p' probe-$e.jsonl | sort -g | tail -n 1
done | sort -g | head -n 1)
for e in 0 0.1 0.2; do
    epochs=$(awk -v t="$target" '{ d = $2 - t; if (d < 0) d = -d; if (best == "" || d < best) { best = d; e = $1 } }
        END { print e }' < <(sed -n 's/.*"epoch": \([0-9]*\),.*"val_accuracy": \([0-9.]*\).*/\1 \2/p' probe-$e.jsonl))
    [ -s teacher-$e.safetensors ] ||
        "$LSR" "${TEACHER[@]}" --epochs "$epochs" --smoothing $e --out teacher-$e.safetensors > /dev/null
    val=$(sed -n "s/.*\"epoch\": $epochs,.*\"val_accuracy\": \([0-9.]*\).*/\1/p" probe-$e.jsonl)
    echo "teacher eps $e epochs $epochs val_accuracy $val (target $target) test_accuracy $(accuracy teacher-$e.safetensors)"
done
STUDENT=(train --model flatten,dense:32,relu,dense:10 --epochs 5 --threads 1 --quiet)
for seed in 0 1 2; do
    [ -s plain-$seed.safetensors ] || "$LSR" "${STUDENT[@]}" --seed $seed --out plain-$seed.safetensors > /dev/null
    echo "student none - $seed $(accuracy plain-$seed.safetensors)"
    for e in 0 0.1 0.2; do
        for T in 1 2 4; do
            out=s-$e-$T-$seed.safetensors
            [ -s $out ] || "$LSR" "${STUDENT[@]}" --seed $seed --teacher teacher-$e.safetensors \
                --distill-temperature $T --distill-weight 0.7 --out $out > /dev/null
            echo "student $e $T $seed $(accuracy $out)"
        done
    done
done
