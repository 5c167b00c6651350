#!/bin/sh
# mpirun for the tests and benchmarks: more ranks than cores allowed
# (--oversubscribe: 4 ranks on a 2-core machine), and as root where that is
# who runs them (CI, containers), which OpenMPI refuses unless told.
#   scripts/mpirun.sh -np P program [args...]
set -eu
extra="--oversubscribe"
[ "$(id -u)" -eq 0 ] && extra="$extra --allow-run-as-root"
exec mpirun $extra "$@"
