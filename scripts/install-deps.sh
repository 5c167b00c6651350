#!/bin/sh
# Installs the Debian packages lsr needs, only those missing.
#   scripts/install-deps.sh          build and tests (Fashion-MNIST, NumPy, pytest included)
#   scripts/install-deps.sh bench    also PyTorch, for the benchmarks
#   scripts/install-deps.sh fuzz     also clang and libFuzzer
#   scripts/install-deps.sh valgrind also valgrind
#   scripts/install-deps.sh format   also clang-format (CI's format check)
#   scripts/install-deps.sh python   also pip and setuptools (make python)
set -eu
need="cmake make gcc pkg-config libopenblas-dev libdnnl-dev zlib1g-dev libcjson-dev libopenmpi-dev openmpi-bin procps dataset-fashion-mnist python3 python3-numpy python3-pytest"
for extra in "$@"; do
    case "$extra" in
    bench) need="$need python3 python3-torch python3-numpy" ;;
    fuzz) need="$need clang libclang-rt-14-dev libomp-dev" ;;
    valgrind) need="$need valgrind" ;;
    format) need="$need clang-format-14" ;;
    python) need="$need python3-pip python3-setuptools" ;;
    data) ;; # always installed: the tests train on it
    *) echo "install-deps.sh: unknown set '$extra' (bench, data, format, fuzz, python, valgrind)" >&2; exit 2 ;;
    esac
done
missing=""
for p in $need; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
