#!/bin/bash
# Knowledge distillation: MLP teachers trained with eps 0, 0.1, 0.2 (20 epochs),
# narrow students (flatten,dense:32,relu,dense:10) distilled from each at
# T = 1, 2, 4 with A = 0.7, 5 epochs, seeds 0-2; a student without a teacher as
# the baseline.  Prints one line per student: teacher_eps T seed test_accuracy.
set -eu
LSR=/work/main/build/lsr
cd /work/exp
mkdir -p distill
for e in 0 0.1 0.2; do
    [ -s distill/teacher-$e.safetensors ] ||
        $LSR train --model mlp --epochs 20 --smoothing $e --seed 100 --threads 2 --quiet \
            --out distill/teacher-$e.safetensors > distill/teacher-$e.log 2>&1
    acc=$($LSR eval --model distill/teacher-$e.safetensors --json | sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p')
    echo "teacher eps $e accuracy $acc"
done
STUDENT='flatten,dense:32,relu,dense:10'
for seed in 0 1 2; do
    $LSR train --model "$STUDENT" --epochs 5 --seed $seed --threads 2 --quiet \
        --out distill/plain-$seed.safetensors > /dev/null 2>&1
    acc=$($LSR eval --model distill/plain-$seed.safetensors --json | sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p')
    echo "student none - $seed $acc"
    for e in 0 0.1 0.2; do
        for T in 1 2 4; do
            out=distill/s-$e-$T-$seed.safetensors
            $LSR train --model "$STUDENT" --epochs 5 --seed $seed --threads 2 --quiet \
                --teacher distill/teacher-$e.safetensors --distill-temperature $T \
                --distill-weight 0.7 --out $out > /dev/null 2>&1
            acc=$($LSR eval --model $out --json | sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p')
            echo "student $e $T $seed $acc"
        done
    done
done
