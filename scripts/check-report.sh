#!/bin/bash
# Renders a sweep's report.html in headless Chromium (Debian's chromium) to a
# PNG, and fails if the rendered page has no SVG plot or the browser logs a
# page error.  Not part of CI.
#   scripts/check-report.sh sweep/report.html [out.png [WIDTH,HEIGHT (1400,2600)]]
set -euo pipefail
report=$(realpath "$1")
png=${2:-${report%.html}.png}
size=${3:-1400,2600}
command -v chromium > /dev/null || { echo "check-report: chromium is not installed (apt-get install chromium)" >&2; exit 2; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars --enable-logging=stderr --v=0)
chromium "${flags[@]}" --window-size="$size" --screenshot="$png" "file://$report" 2> "$log" > /dev/null
dom=$(chromium "${flags[@]}" --dump-dom "file://$report" 2>> "$log")
plots=$(grep -o '<svg class="plot"' <<< "$dom" | wc -l)
errors=$(grep -E 'CONSOLE.*(ERROR|Uncaught)|Uncaught|SyntaxError' "$log" || true)
if [ "$plots" -eq 0 ]; then echo "check-report: $report shows no plot" >&2; exit 1; fi
if [ -n "$errors" ]; then echo "check-report: the page logged errors:" >&2; echo "$errors" >&2; exit 1; fi
[ -s "$png" ] || { echo "check-report: no screenshot was written" >&2; exit 1; }
echo "check-report: $plots plots rendered, no page errors; screenshot $png"
