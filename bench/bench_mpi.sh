#!/bin/sh
# make bench-mpi: the cleverhans CNN's training throughput on this machine's
# cores, one process with 2 threads against 2 processes with 1 thread each
# (mpirun), the exact exchange against MPI_Allreduce, and the bytes each
# process receives per step.  Each run: 2 epochs of --train-limit samples
# (default 12800: 100 steps of 128), the faster epoch's samples per second
# from --metrics.  Last line:
#   p2x1-vs-p1x2 R allreduce-vs-exact A
# R: 2 processes x 1 thread (exact) / 1 process x 2 threads (no mpirun);
# A: allreduce / exact, both with 2 processes.
#   bench_mpi.sh LSR [TRAIN_LIMIT]
set -eu
lsr=$1
limit=${2:-12800}
here=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
common="--model cleverhans-cnn --train-limit $limit --epochs 2 --batch 128 --smoothing 0.1"

best() { # the faster epoch's samples per second in a metrics file
    sed -n 's/.*"samples_per_second": \([0-9.]*\).*/\1/p' "$1" | sort -g | tail -n 1
}
measure() { # the command
    rm -f "$dir/m.json"
    "$@" --metrics "$dir/m.json" > "$dir/log" 2>&1 || { cat "$dir/log" >&2; exit 1; }
    best "$dir/m.json"
}

p1x2=$(measure "$lsr" train $common --threads 2)
# (one rank with 2 threads: not bound to one core, as OpenMPI binds ranks by default)
mp1x2=$(measure sh "$here/scripts/mpirun.sh" --bind-to none -np 1 "$lsr" train $common \
    --threads 2)
p2x1=$(measure sh "$here/scripts/mpirun.sh" -np 2 "$lsr" train $common --threads 1)
params=$(sed -n 's/.*(\([0-9]*\) parameters).*/\1/p' "$dir/log" | head -n 1)
p2x1a=$(measure sh "$here/scripts/mpirun.sh" -np 2 "$lsr" train $common --threads 1 \
    --exchange allreduce)
echo "cleverhans CNN, $limit samples a epoch, batch 128, 4 parts a batch (--micro-batches), best of 2 epochs"
printf "%-48s %12s %8s\n" "run" "samples/s" "vs 1x2"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
row() { printf "%-48s %12.1f %8s\n" "$1" "$2" "$(ratio "$2" "$p1x2")"; }
row "1 process x 2 threads (no mpirun)" "$p1x2"
row "mpirun -np 1 --bind-to none, 2 threads (exact)" "$mp1x2"
row "mpirun -np 2, 1 thread each (exact)" "$p2x1"
row "mpirun -np 2, 1 thread each (allreduce)" "$p2x1a"
# bytes each process receives per step, for 2 processes: exact: the other's 2
# parts (gradient + 48 bytes of sums each); allreduce (ring): about the gradient
# once (2 (P - 1) / P of it, both halves)
echo "bytes received per process per step (P = 2, $params parameters): exact $((2 * (params * 4 + 48))), allreduce ~$((params * 4 + 56))"
echo "p2x1-vs-p1x2 $(ratio "$p2x1" "$p1x2") allreduce-vs-exact $(ratio "$p2x1a" "$p2x1")"
