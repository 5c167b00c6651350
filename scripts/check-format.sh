#!/bin/sh
# The C sources as .clang-format writes them (lines of at most 100 columns):
# lists each file clang-format would change and fails if there is any.
#   scripts/check-format.sh         check
#   scripts/check-format.sh --fix   rewrite them in place
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh format
files=$(git ls-files '*.c' '*.h' '*.inc')
if [ "${1:-}" = "--fix" ]; then
    # shellcheck disable=SC2086
    clang-format-14 -i $files
    exit 0
fi
bad=0
for f in $files; do
    if ! clang-format-14 "$f" | cmp -s - "$f"; then
        echo "check-format: $f is not as .clang-format writes it (scripts/check-format.sh --fix)"
        bad=1
    fi
done
long=$(git ls-files '*.c' '*.h' '*.inc' | xargs awk 'length > 100 { print FILENAME ":" FNR }')
if [ -n "$long" ]; then
    echo "check-format: lines over 100 columns:"
    echo "$long"
    bad=1
fi
[ "$bad" -eq 0 ] && echo "check-format: every C file is formatted"
exit "$bad"
