#!/bin/sh
# Data-parallel lsr train under mpirun: 200 steps on P = 1, 2, 3 and 4
# processes give the same model file byte for byte; a rank killed with -9
# stops the job (mpirun exits non-zero, nothing hangs), and a resume from the
# last checkpoint on another P ends with that same file.
#   test_mpi_train.sh LSR MPIRUN_SH
set -eu
lsr=$1
mpirun=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# convolution and dropout (drawn per part), 6400 samples in batches of 32: 200 steps
spec='conv:8:5:2:same,relu,dropout:0.25,flatten,dense:32,relu,dropout:0.5,dense:10'
run() { # run P [flags...]
    np=$1
    shift
    sh "$mpirun" -np "$np" "$lsr" train --model "$spec" --train-limit 6400 --epochs 1 \
        --batch 32 --threads 1 --smoothing 0.1 --quiet "$@"
}
fail() { echo "test_mpi_train: $*" >&2; exit 1; }

for p in 1 2 3 4; do
    run "$p" --out "$dir/p$p.safetensors" > "$dir/p$p.log" 2>&1 || {
        cat "$dir/p$p.log" >&2
        fail "P = $p failed"
    }
done
(cd "$dir" && sha256sum p1.safetensors p2.safetensors p3.safetensors p4.safetensors)
want=$(sha256sum < "$dir/p1.safetensors")
for np in 2 3 4; do
    [ "$(sha256sum < "$dir/p$np.safetensors")" = "$want" ] || fail "P = $np differs from P = 1"
done
# only rank 0 reports: one test-evaluation block, not P
[ "$(grep -c '^test evaluation' "$dir/p4.log")" = 1 ] || fail "P = 4 printed $(grep -c '^test evaluation' "$dir/p4.log") reports"

# labels resampled (--smoothing-mode sample): drawn per sample of the batch, so the
# same for any P too
for p in 1 3; do
    sh "$mpirun" -np "$p" "$lsr" train --model mlp --train-limit 2000 --epochs 1 --batch 64 \
        --threads 1 --smoothing 0.3 --smoothing-mode sample --quiet \
        --out "$dir/s$p.safetensors" > "$dir/s$p.log" 2>&1 || {
        cat "$dir/s$p.log" >&2
        fail "--smoothing-mode sample on P = $p failed"
    }
done
cmp -s "$dir/s1.safetensors" "$dir/s3.safetensors" ||
    fail "--smoothing-mode sample: P = 1 and P = 3 differ"

# lsr sweep under mpirun -np 3: its runs shared out, each a one-process run, so the
# same models and results (but the training times) as the sweep in one process
sweep() { # sweep DIR [launcher...]
    out=$1
    shift
    "$@" "$lsr" sweep --out "$out" --smoothing 0,0.1,0.2 --seeds 2 --model mlp --train-limit 2000 \
        --epochs 1 --threads 1 --attack-limit 200 > "$out.log" 2>&1 || {
        cat "$out.log" >&2
        fail "the sweep into $out failed"
    }
}
sweep "$dir/sweep1"
sweep "$dir/sweep3" sh "$mpirun" -np 3
for f in "$dir"/sweep1/runs/*.safetensors; do
    cmp -s "$f" "$dir/sweep3/runs/${f##*/}" || fail "sweep run ${f##*/} differs under mpirun -np 3"
done
[ "$(cut -d, -f1-16 "$dir/sweep1/results.csv")" = "$(cut -d, -f1-16 "$dir/sweep3/results.csv")" ] ||
    fail "results.csv of the sweep under mpirun -np 3 differs from the one-process sweep's"
sweep "$dir/sweep3" sh "$mpirun" -np 2 # again, on 2: every run kept
[ "$(grep -c 'done before, kept' "$dir/sweep3.log")" = 6 ] || fail "the sweep did not keep its runs"
echo "sweep under mpirun -np 3: the same runs and results; resumed on 2: all kept"

# a file that one rank cannot read (a node without it: here rank 1 is given
# another path) stops every rank, with that process's message, instead of
# leaving the others waiting for it in their first exchange
printf 'n%d\n' 0 1 2 3 4 5 6 7 8 9 > "$dir/names.txt"
rc=0
timeout 120 sh "$mpirun" -np 2 sh -c '
    names=$1
    shift
    [ "${OMPI_COMM_WORLD_RANK:-}" = 1 ] && names=$names.not-on-this-node
    exec "$@" --class-names "$names"' sh "$dir/names.txt" "$lsr" train --model mlp \
    --train-limit 640 --epochs 1 --threads 1 --quiet > "$dir/n.log" 2>&1 || rc=$?
[ "$rc" != 124 ] || fail "one rank without its --class-names file: the others hung"
grep -q "process 1 of 2: --class-names .*names.txt.not-on-this-node" "$dir/n.log" && [ "$rc" != 0 ] || {
    cat "$dir/n.log" >&2
    fail "one rank without its --class-names file: exit $rc, and not that process's message"
}
echo "one rank without its --class-names file: every rank stops (exit $rc), naming it"
# a command without an exchange (eval): rank 0 reports the other's failure
rc=0
timeout 120 sh "$mpirun" -np 2 sh -c '
    model=$1
    shift
    [ "${OMPI_COMM_WORLD_RANK:-}" = 1 ] && model=$model.not-on-this-node
    exec "$@" --model "$model"' sh "$dir/p1.safetensors" "$lsr" eval > "$dir/e.log" 2>&1 || rc=$?
grep -q "^lsr eval: process 1 of 2: .*p1.safetensors.not-on-this-node" "$dir/e.log" && [ "$rc" != 0 ] && [ "$rc" != 124 ] || {
    cat "$dir/e.log" >&2
    fail "eval with one rank without its model: exit $rc, and not that process's message"
}

# kill -9 one rank of a P = 2 run after its first checkpoints, then resume on P = 3
run 2 --out "$dir/k.safetensors" --checkpoint "$dir/k.ckpt" --checkpoint-every 20 \
    > "$dir/k.log" 2>&1 &
job=$!
tries=0
while [ ! -e "$dir/k.ckpt" ] && [ $tries -lt 600 ]; do sleep 0.1; tries=$((tries + 1)); done
[ -e "$dir/k.ckpt" ] || fail "no checkpoint from the P = 2 run"
# $job is the subshell of run; its child is mpirun, whose children are the ranks
launcher=$(pgrep -P "$job" | head -n 1)
victim=$(pgrep -P "$launcher" -f "$lsr train" | tail -n 1 || true)
[ -n "$victim" ] || fail "no rank of the P = 2 run to kill (mpirun $launcher)"
kill -9 "$victim"
if wait "$job"; then
    # the run may have ended before the kill landed: then there is nothing to test
    grep -q . "$dir/k.safetensors" && [ "$(sha256sum < "$dir/k.safetensors")" = "$want" ] ||
        fail "the P = 2 run ended without its model, or with another one"
    echo "the run finished before rank $victim was killed"
    exit 0
fi
grep -q "exited on signal 9" "$dir/k.log" || {
    cat "$dir/k.log" >&2
    fail "mpirun did not say that a rank was killed"
}
echo "mpirun after kill -9 of the rank with pid $victim: exit non-zero, naming the signal"
[ ! -e "$dir/k.safetensors" ] || fail "a model file from the killed run"
# the parts of each batch decide the bits: a resume with other ones is refused
if sh "$mpirun" -np 2 "$lsr" train --resume "$dir/k.ckpt" --micro-batches 8 > "$dir/m.log" 2>&1 ||
    ! grep -q -- "--micro-batches is 8 here but 4" "$dir/m.log"; then
    cat "$dir/m.log" >&2
    fail "a resume with other --micro-batches was not refused"
fi
sh "$mpirun" -np 3 "$lsr" train --resume "$dir/k.ckpt" --threads 1 --quiet > "$dir/r.log" 2>&1 || {
    cat "$dir/r.log" >&2
    fail "the resume on P = 3 failed"
}
[ "$(sha256sum < "$dir/k.safetensors")" = "$want" ] ||
    fail "killed at a checkpoint and resumed on P = 3: another model than the uninterrupted run's"
echo "killed, resumed on P = 3: the same model"
