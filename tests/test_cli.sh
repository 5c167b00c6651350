#!/bin/bash
# The lsr command end to end on tiny generated data: bad input gives one
# line naming the flag or file and leaves no output behind; kill -9 at a
# random step and SIGTERM never lose the run (resume ends byte-identical to
# an uninterrupted run, also when the run's own command is given again with
# --resume added); a write limit (full disk) leaves the old files intact; a
# diverging run stops naming its epoch and step; a sweep keeps one
# checkpoint per run.
#   test_cli.sh path/to/lsr
set -u
LSR=$(realpath "$1")
SHIM_SOURCE=$(dirname "$(realpath "$0")")/cli_shim.c
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
passed=0
failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAILED: $*" >&2; }

# ---- tiny data: 8x8 images, 3 classes, class c around grey 80c ----
mkdata() { # dir n_train n_test
    mkdir -p "$1"
    for split in train:$2 t10k:$3; do
        name=${split%%:*}
        n=${split##*:}
        {
            printf '\x00\x00\x08\x03'
            printf "\\x$(printf %02x $((n >> 24 & 255)))\\x$(printf %02x $((n >> 16 & 255)))\\x$(printf %02x $((n >> 8 & 255)))\\x$(printf %02x $((n & 255)))"
            printf '\x00\x00\x00\x08\x00\x00\x00\x08'
            for ((i = 0; i < n; i++)); do
                c=$((i % 3))
                head -c 64 /dev/zero | tr '\0' "\\$(printf %03o $((40 + 80 * c)))"
            done
        } > "$1/$name-images-idx3-ubyte"
        {
            printf '\x00\x00\x08\x01'
            printf "\\x$(printf %02x $((n >> 24 & 255)))\\x$(printf %02x $((n >> 16 & 255)))\\x$(printf %02x $((n >> 8 & 255)))\\x$(printf %02x $((n & 255)))"
            for ((i = 0; i < n; i++)); do printf "\\x0$((i % 3))"; done
        } > "$1/$name-labels-idx1-ubyte"
    done
}
mkdata data 768 96
MODEL="flatten,dense:32,relu,dense:3"
TRAIN=(train --data data --model "$MODEL" --epochs 12 --batch 16 --seed 3 --quiet)

# expect_error "what" needle command...: non-zero exit, one stderr line naming needle
expect_error() {
    local what=$1 needle=$2
    shift 2
    "$@" > out.txt 2> err.txt
    local rc=$?
    local lines
    lines=$(wc -l < err.txt)
    if [ $rc -ne 0 ] && [ "$lines" -eq 1 ] && grep -q -- "$needle" err.txt; then ok; else
        bad "$what: rc $rc, stderr: $(cat err.txt)"; fi
}

# LD_PRELOAD=$SHIM (tests/cli_shim.c), where a C compiler is at hand: lsr's
# memcpy onto an overlapping buffer exits 97; SHIM_FAIL_REALLOC=1: its
# realloc calls fail (under AddressSanitizer too, whose runtime then comes second)
SHIM=""
if ${CC:-cc} -O0 -fno-builtin -shared -fPIC -o shim.so "$SHIM_SOURCE" -ldl 2> /dev/null; then SHIM=$PWD/shim.so
else echo "note: no C compiler (cc): the memcpy and out-of-memory checks are skipped" >&2; fi
SHIM_RUN=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" "LD_PRELOAD=$SHIM")

# kill_resume OUT CKPT WAIT ARGS...: runs lsr ARGS --out OUT --checkpoint CKPT,
# kills it with -9 at a random moment (WAIT 1: once CKPT exists), then resumes
# from CKPT (or starts again when none was written) until OUT exists
kill_resume() {
    local out=$1 ckpt=$2 wait_ckpt=$3
    shift 3
    rm -f "$out" "$ckpt"
    "$LSR" "$@" --out "$out" --checkpoint "$ckpt" > /dev/null 2>&1 &
    local pid=$!
    if [ "$wait_ckpt" = 1 ]; then
        for i in $(seq 400); do [ -e "$ckpt" ] && break; sleep 0.01; done # under way
    fi
    sleep "0.$((RANDOM % 4))$((RANDOM % 10))"
    kill -9 $pid 2> /dev/null
    wait $pid 2> /dev/null
    for attempt in 1 2 3; do
        [ -s "$out" ] && break
        if [ -s "$ckpt" ]; then "$LSR" train --resume "$ckpt" --quiet > /dev/null 2> err.txt
        else "$LSR" "$@" --out "$out" --checkpoint "$ckpt" > /dev/null 2> err.txt; fi
    done
}

# ---- bad input ----
expect_error "unknown flag" "--frobnicate" "$LSR" train --frobnicate
expect_error "unknown command" "frob" "$LSR" frob
expect_error "eps > 1" "--smoothing" "$LSR" "${TRAIN[@]}" --smoothing 1.5
expect_error "eps not a number" "--smoothing" "$LSR" "${TRAIN[@]}" --smoothing abc
expect_error "missing data" "nowhere" "$LSR" train --data nowhere
expect_error "bad spec" "model spec" "$LSR" train --data data --model "conv:3:9:1:valid,dense:3"
expect_error "wrong class count" "3 classes" "$LSR" train --data data --model "flatten,dense:5"
expect_error "unwritable out" "--out" "$LSR" "${TRAIN[@]}" --out /nonexistent/m.safetensors
expect_error "missing value" "needs a value" "$LSR" train --epochs
expect_error "bad precision" "--precision" "$LSR" "${TRAIN[@]}" --precision fp16
expect_error "bad prior file" "--smoothing-prior" "$LSR" "${TRAIN[@]}" --smoothing 0.1 --smoothing-prior /nonexistent
printf '1 2\n' > prior.txt
expect_error "short prior file" "exactly 3 numbers" "$LSR" "${TRAIN[@]}" --smoothing 0.1 --smoothing-prior prior.txt
expect_error "eval without model" "--model" "$LSR" eval --data data
printf 'garbage' > junk.safetensors
expect_error "eval of a corrupt file" "junk.safetensors" "$LSR" eval --model junk.safetensors --data data
expect_error "attack eps" "--eps" "$LSR" attack --model junk.safetensors --eps 2
expect_error "sweep list" "--smoothing" "$LSR" sweep --out sw --smoothing 0,x
mkdir -p mism && cp data/* mism/ && printf '\x00\x00\x08\x01\x00\x00\x00\x05' > mism/train-labels-idx1-ubyte
expect_error "count mismatch" "768 images but" "$LSR" "${TRAIN[@]}"  --data mism
rm -rf mism
if ls ./*.tmp.* data/*.tmp.* > /dev/null 2>&1; then bad "temporary files left behind"; else ok; fi
if [ -n "$SHIM" ]; then
    # flatten works in place: no memcpy of a buffer onto itself
    "${SHIM_RUN[@]}" "$LSR" "${TRAIN[@]}" --epochs 1 > /dev/null 2> err.txt && ok || bad "flatten: rc $?, $(cat err.txt)"
    # out of memory while recording an epoch's metrics: an error, not a stop on a signal
    SHIM_FAIL_REALLOC=1 "${SHIM_RUN[@]}" "$LSR" "${TRAIN[@]}" --epochs 2 --metrics oom.jsonl > /dev/null 2> err.txt
    rc=$?
    [ $rc -eq 1 ] && [ "$(wc -l < err.txt)" -eq 1 ] && grep -q -- "--metrics oom.jsonl: out of memory" err.txt && [ ! -e oom.jsonl ] && ok ||
        bad "out of memory in the metrics: rc $rc, $(cat err.txt)"
fi
# --smoothing-prior data on 60,000 examples: the class frequencies sum to 1
# (summed as 1/n in float they drifted past the loss's 1e-4 tolerance)
mkdir -p big
awk 'BEGIN { for (i = 0; i < 60000; i++) printf "%d,%d\n", i % 2, i % 2 }' > big/train.csv
awk 'BEGIN { for (i = 0; i < 20; i++) printf "%d,%d\n", i % 2, i % 2 }' > big/test.csv
"$LSR" train --data big --model flatten,dense:2 --epochs 1 --batch 4096 --smoothing 0.1 --smoothing-prior data \
    --quiet > /dev/null 2> err.txt && ok || bad "--smoothing-prior data on 60,000 examples: $(cat err.txt)"
rm -rf big

# ---- a full run, then eval, calibrate, attack, project ----
"$LSR" "${TRAIN[@]}" --val 96 --out full.safetensors --checkpoint full.ckpt --checkpoint-every 5 \
    --metrics full.jsonl > /dev/null 2> err.txt || bad "uninterrupted run: $(cat err.txt)"
[ -s full.safetensors ] && [ "$(wc -l < full.jsonl)" -eq 12 ] && ok || bad "run outputs"
"$LSR" calibrate --model full.safetensors > /dev/null 2> err.txt && ok || bad "calibrate: $(cat err.txt)"
"$LSR" eval --model full.safetensors --data data --json > eval.json 2> err.txt &&
    grep -q '"temperature"' eval.json && grep -q '"ece"' eval.json && ok || bad "eval: $(cat err.txt)"
"$LSR" attack --model full.safetensors --data data --eps 0.3 --json --save . > attack.json 2> err.txt &&
    grep -q '"adv_accuracy"' attack.json && [ -s grid.svg ] && [ -s t10k-images-idx3-ubyte ] && ok ||
    bad "attack: $(cat err.txt)"
"$LSR" project --model full.safetensors --model full.safetensors --data data --classes 0,1,2 \
    --per-class 20 --out proj.svg > proj.txt 2> err.txt &&
    [ "$(grep -c 'within / between spread' proj.txt)" = 2 ] &&
    [ "$(grep -o '<circle' proj.svg | wc -l)" = $((2 * 60)) ] && ok ||
    bad "project: $(cat err.txt)"
expect_error "distill without teacher" "--distill-weight" "$LSR" "${TRAIN[@]}" --distill-weight 0.7
expect_error "missing teacher" "--teacher" "$LSR" "${TRAIN[@]}" --teacher nosuch.safetensors
expect_error "teacher with adv" "--adv" "$LSR" "${TRAIN[@]}" --teacher full.safetensors --adv fgsm
"$LSR" "${TRAIN[@]}" --epochs 1 --teacher full.safetensors --distill-temperature 2 \
    --distill-weight 0.7 --out student.safetensors 2> err.txt && [ -s student.safetensors ] && ok ||
    bad "distillation from full.safetensors: $(cat err.txt)"
# class names: kept in the model file, shown by eval, attack and project
# (which takes them in --classes), refused with one line when wrong
printf 'dark\nmid grey\r\nlight\n\n' > names.txt
"$LSR" "${TRAIN[@]}" --epochs 2 --class-names names.txt --metrics named.jsonl --out named.safetensors 2> err.txt &&
    grep -aq '"class_names":"\[\\"dark\\",\\"mid grey\\",\\"light\\"\]"' named.safetensors && ok ||
    bad "--class-names: $(cat err.txt; head -c 300 named.safetensors | tr -c '[:print:]' .)"
grep -q '"step_loss_sd": [0-9]' named.jsonl && ok || bad "metrics without step_loss_sd: $(head -n 1 named.jsonl)"
"$LSR" eval --model named.safetensors --data data > eval.txt 2> err.txt &&
    grep -q '^  mid grey  *[0-9.]* of  *32' eval.txt && ok || bad "eval per class: $(cat eval.txt err.txt)"
"$LSR" attack --model named.safetensors --data data --limit 5 --save . > /dev/null 2> err.txt &&
    grep -q '>light</text>' grid.svg && ! grep -q 'pred [0-9]' grid.svg && ok || bad "attack grid names: $(cat err.txt)"
# names whose bytes are not their columns, one long: eval's per-class rows
# start their numbers at one display column, past the widest name; attack's
# grid cuts a name too long for its cell at a whole character, ends it in
# "…" and keeps the whole in a <title> (display columns counted by GNU wc -L
# under C.UTF-8, which takes a wide East Asian character as 2)
LONG="Ñandú común de las pampas sur" # 29 characters, 32 bytes
printf 'Été\n日本語のラベル\n%s\n' "$LONG" > wide.txt
cols() { printf '%s\n' "$1" | LC_ALL=C.UTF-8 wc -L; }
if [ "$(cols 'Été')" != 3 ] || [ "$(cols '日本')" != 4 ]; then
    echo "note: no C.UTF-8 locale: the display-column checks of eval and attack are skipped" >&2
elif "$LSR" "${TRAIN[@]}" --epochs 2 --class-names wide.txt --out wide.safetensors > /dev/null 2> err.txt; then
    "$LSR" eval --model wide.safetensors --data data > eval.txt 2> err.txt
    sed -n '/^per class:/,$p' eval.txt | tail -n +2 > rows.txt
    # each row's columns before its accuracy: 2 + 29 (the long name; the
    # Japanese one takes 14)
    starts=$(while IFS= read -r row; do cols "${row%% [0-9].[0-9][0-9][0-9][0-9] of *}"; done < rows.txt | sort -u)
    [ "$(grep -c ' [0-9]\.[0-9]\{4\} of  *32' rows.txt)" -eq 3 ] && [ "$starts" = 31 ] && ok ||
        bad "eval per class, columns of non-ASCII and long names (row starts: $starts): $(cat eval.txt err.txt)"
    "$LSR" attack --model wide.safetensors --data data --limit 5 --save . > /dev/null 2> err.txt ||
        bad "attack with wide names: $(cat err.txt)"
    # each label as "shown<TAB>title"; 8x8 images make cells of 8 * 3 + 14 = 38 px,
    # 6 columns (grid_label_columns in cmd_attack.c: 38 x 10 / 56); a cut label
    # keeps whole characters of at most 5 columns, as many as fit, then "…"
    grep -oE '<text x="[0-9]+" y="[0-9]+" fill="[^"]*">(<title>[^<]*</title>)?[^<]*</text>' grid.svg |
        sed -E 's|^<text [^>]*>||; s|</text>$||; s|^<title>([^<]*)</title>(.*)|\2\t\1|' > labels.txt
    (
        export LC_ALL=C.UTF-8
        [ "$(wc -l < labels.txt)" -ge 10 ] && grep -qE "$(printf '\t')(true: )?$LONG\$" labels.txt || exit 1
        while IFS=$'\t' read -r shown title; do
            [ "$(cols "$shown")" -le 6 ] || exit 1
            [ -z "$title" ] && continue
            kept=${shown%…}
            rest=${title#"$kept"}
            [ "$(cols "$title")" -gt 6 ] && [ "$kept…" = "$shown" ] && [ "$kept$rest" = "$title" ] &&
                [ $(($(cols "$kept") + $(cols "${rest:0:1}"))) -gt 5 ] || exit 1
        done < labels.txt
    ) && ok || bad "attack grid: a label not cut to its cell, or without its title: $(cat labels.txt err.txt)"
    if command -v xmllint > /dev/null; then # where installed; nothing is installed for it
        xmllint --noout grid.svg 2> err.txt && ok || bad "grid.svg is not well-formed: $(cat err.txt)"
    fi
else
    bad "--class-names with non-ASCII names: $(cat err.txt)"
fi
"$LSR" project --model named.safetensors --data data --classes light,DARK,1 --per-class 5 --out named.svg \
    > /dev/null 2> err.txt && grep -q 'light (5 examples)' named.svg && grep -q 'from light&apos;s template towards dark&apos;s' named.svg &&
    ok || bad "project by the model's names: $(cat err.txt)"
expect_error "project by an unknown name" "'white' is not a class index" "$LSR" project --model named.safetensors \
    --data data --classes white,dark,light --out named2.svg
printf 'dark\nlight\n' > two.txt
expect_error "two names for three classes" "2 names for the data's 3 classes" "$LSR" "${TRAIN[@]}" --class-names two.txt
printf 'a\nb\na\n' > twice.txt
expect_error "a name twice" "both named 'a'" "$LSR" "${TRAIN[@]}" --class-names twice.txt
printf 'a\n\nb\nc\n' > gap.txt
expect_error "an empty line" "line 2 is empty" "$LSR" "${TRAIN[@]}" --class-names gap.txt
printf 'a\nb\0x\nc\n' > nul.txt
expect_error "a NUL byte in a name" "line 2 holds a NUL byte" "$LSR" "${TRAIN[@]}" --class-names nul.txt
expect_error "no names file" "--class-names nosuch.txt" "$LSR" "${TRAIN[@]}" --class-names nosuch.txt
expect_error "project classes" "--classes" "$LSR" project --model full.safetensors --data data \
    --classes 0,1,3 --out p2.svg
[ ! -e p2.svg ] && ok || bad "project: a refused run left p2.svg"
# names with commas, in --classes as they are; a list that reads as three
# classes in two ways is refused
printf 'dark, very\nmid\nlight\n' > comma.txt
printf 'a,b\na\nb\n' > ambiguous.txt
"$LSR" "${TRAIN[@]}" --epochs 1 --class-names comma.txt --out comma.safetensors 2> err.txt &&
    "$LSR" "${TRAIN[@]}" --epochs 1 --class-names ambiguous.txt --out ambiguous.safetensors 2>> err.txt &&
    "$LSR" project --model comma.safetensors --data data --classes 'light,Dark, very,1' --per-class 5 \
        --out comma.svg > /dev/null 2>> err.txt && grep -q 'dark, very (5 examples)' comma.svg && ok ||
    bad "project by a name with a comma: $(cat err.txt)"
expect_error "project by names read two ways" "reads as three classes in 2 ways" "$LSR" project \
    --model ambiguous.safetensors --data data --classes a,b,a,b --out ambiguous.svg
"$LSR" project --model ambiguous.safetensors --data data --classes 'b,a,a,b' --per-class 5 \
    --out ambiguous.svg > /dev/null 2> err.txt && grep -q 'a,b (5 examples)' ambiguous.svg && ok ||
    bad "project by names read one way only: $(cat err.txt)"
# empty pieces are passed over; one unknown name is named
"$LSR" project --model comma.safetensors --data data --classes ',0,,1,2,' --per-class 5 \
    --out pieces.svg > /dev/null 2> err.txt && [ -s pieces.svg ] && ok ||
    bad "project with empty pieces in --classes: $(cat err.txt)"
expect_error "project by one unknown name" "'foo' is not a class index" "$LSR" project \
    --model comma.safetensors --data data --classes foo,1 --out pieces2.svg
# bf16 convolutions (where the CPU has AVX512_BF16): a run, reproducible,
# marked in the model file; elsewhere a one-line refusal
BF16=(train --data data --model "conv:4:3:2:same,relu,flatten,dense:3" --epochs 2 --batch 16
      --seed 5 --quiet --precision bf16)
if "$LSR" "${BF16[@]}" --out bf16-a.safetensors > /dev/null 2> err.txt; then
    "$LSR" "${BF16[@]}" --out bf16-b.safetensors > /dev/null 2>&1
    cmp -s bf16-a.safetensors bf16-b.safetensors && ok || bad "bf16: the same seed gave different models"
    grep -q '"precision":"bf16"' bf16-a.safetensors && ok || bad "bf16: precision not in the metadata"
    # kill -9 in the middle, resume: the model of the uninterrupted run
    "$LSR" "${BF16[@]}" --epochs 2000 --out bf16-ref.safetensors > /dev/null 2>&1
    kill_resume bk.safetensors bk.ckpt 1 "${BF16[@]}" --epochs 2000 --checkpoint-every 1000
    cmp -s bk.safetensors bf16-ref.safetensors && ok || bad "bf16 kill -9: resumed model differs ($(cat err.txt))"
else
    [ "$(wc -l < err.txt)" -eq 1 ] && grep -q -- "--precision bf16" err.txt && ok || bad "bf16 refusal: $(cat err.txt)"
fi
# the reference run for the resume checks: the same settings, uncalibrated
"$LSR" "${TRAIN[@]}" --val 96 --out reference.safetensors > /dev/null 2>&1

# ---- kill -9 at a random moment, then resume until done ----
for trial in 1 2 3; do
    kill_resume k.safetensors k.ckpt 0 "${TRAIN[@]}" --val 96 --checkpoint-every 3
    cmp -s k.safetensors reference.safetensors && ok || bad "kill -9 trial $trial: resumed model differs ($(cat err.txt))"
done

# ---- SIGTERM: checkpoint, message, exit 143; resume ends identical ----
rm -f s.safetensors s.ckpt
"$LSR" "${TRAIN[@]}" --epochs 2000 --val 96 --out s.safetensors --checkpoint s.ckpt --checkpoint-every 50 \
    > /dev/null 2> sig.txt &
pid=$!
for i in $(seq 400); do [ -e s.ckpt ] && break; sleep 0.02; done # the run is under way
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 143 ] && grep -q "resume with 'lsr train --resume s.ckpt'" sig.txt && [ ! -e s.safetensors ] && ok ||
    bad "SIGTERM: rc $rc, $(cat sig.txt)"
# up-arrow: the run's own command with --resume added
S_RUN=("${TRAIN[@]}" --epochs 2000 --val 96 --out s.safetensors --checkpoint s.ckpt --checkpoint-every 50)
"$LSR" "${S_RUN[@]}" --resume s.ckpt > /dev/null 2> err.txt && [ -s s.safetensors ] && ok ||
    bad "resume after SIGTERM with the run's command: $(cat err.txt)"
"$LSR" "${TRAIN[@]}" --epochs 2000 --val 96 --out s-reference.safetensors > /dev/null 2>&1
cmp -s s.safetensors s-reference.safetensors && ok || bad "SIGTERM: resumed model differs"
# class names ride in the checkpoint: a resume keeps them, the names file gone
printf 'dark\nmid grey\nlight\n' > n2.txt
rm -f cn.safetensors cn.ckpt
"$LSR" "${TRAIN[@]}" --epochs 300 --class-names n2.txt --out cn.safetensors --checkpoint cn.ckpt \
    --checkpoint-every 50 > /dev/null 2>&1 &
pid=$!
for i in $(seq 400); do [ -e cn.ckpt ] && break; sleep 0.02; done # the run is under way
kill -TERM $pid
wait $pid
rm -f n2.txt
[ ! -e cn.safetensors ] && "$LSR" train --resume cn.ckpt --quiet > /dev/null 2> err.txt &&
    grep -aq '"class_names":"\[\\"dark\\",\\"mid grey\\",\\"light\\"\]"' cn.safetensors && ok ||
    bad "class names through a resume: $(cat err.txt)"
# the data by its absolute path, a flag at its default value, --threads=N: the same run
"$LSR" "${S_RUN[@]}" --data "$PWD/data/" --lr 0.001 --resume s.ckpt --threads=1 > /dev/null 2> err.txt && ok ||
    bad "resume with equivalent flags: $(cat err.txt)"
expect_error "resume with another value" "--epochs is 3 here but 2000 in the checkpoint" \
    "$LSR" train --resume s.ckpt --epochs 3
expect_error "resume with another path" "--out is other.safetensors here but s.safetensors" \
    "$LSR" "${S_RUN[@]}" --out other.safetensors --resume s.ckpt

# ---- a write limit (a full disk): one line, old files intact, no temporaries ----
# (lsr itself must survive SIGXFSZ: the test does not ignore it for it)
cp full.safetensors before.safetensors
( ulimit -f 8; exec "$LSR" "${TRAIN[@]}" --out full.safetensors ) > /dev/null 2> err.txt
rc=$?
[ $rc -eq 1 ] && [ "$(wc -l < err.txt)" -eq 1 ] && grep -q "full.safetensors" err.txt && ok ||
    bad "full disk: rc $rc, $(cat err.txt)"
cmp -s full.safetensors before.safetensors && ok || bad "full disk: the old model file changed"
if ls ./full.safetensors.tmp.* > /dev/null 2>&1; then bad "full disk: temporary files left"; else ok; fi
# temporaries of killed writers are cleared by the next write of the same file
if ls ./k.ckpt.tmp.* ./k.safetensors.tmp.* > /dev/null 2>&1; then bad "stale temporaries of killed runs"; else ok; fi

# ---- divergence: stop naming the step, or skip ----
# three linear layers and a huge step: the logits overflow within a few steps
DIVERGE=(--lr 1000 --optimizer sgd --momentum 0 --model "flatten,dense:64,dense:64,dense:3")
expect_error "diverging run" "epoch 1 step" "$LSR" "${TRAIN[@]}" "${DIVERGE[@]}" --out diverged.safetensors
[ ! -e diverged.safetensors ] && ok || bad "a diverged run wrote a model"
"$LSR" "${TRAIN[@]}" "${DIVERGE[@]}" --on-nonfinite skip > /dev/null 2> err.txt && ok || bad "skip: $(cat err.txt)"
"$LSR" train --data data --model "flatten,dense:64,dense:64,dense:3" --epochs 2 --batch 16 --lr 1000 --optimizer sgd \
    --momentum 0 --on-nonfinite skip 2>&1 > /dev/null | grep -q "skipped" && ok || bad "skips are not counted"

# ---- a tiny sweep, resumed ----
"$LSR" sweep --data data --model "$MODEL" --smoothing 0,0.1 --seeds 2 --epochs 2 --val 96 --out sw --quiet > /dev/null 2> err.txt &&
    [ -s sw/results.csv ] && grep -q "<svg" sw/report.html && ok || bad "sweep: $(cat err.txt)"
"$LSR" sweep --data data --model "$MODEL" --smoothing 0,0.1 --seeds 2 --epochs 2 --val 96 --out sw --quiet > /dev/null 2> err.txt &&
    [ "$(grep -c 'done before' err.txt)" -eq 4 ] && ok || bad "sweep resume: $(cat err.txt)"
# the report's penultimate layer: two panels (eps 0 and 0.1, seed 0), each run's spread
grep -q '<h2>The penultimate layer</h2>' sw/report.html &&
    [ "$(grep -c 'within / between spread [0-9]' sw/report.html)" -eq 2 ] &&
    [ "$(tail -n +2 sw/results.csv | cut -d, -f18 | grep -c '^[0-9]')" -eq 4 ] && ok ||
    bad "sweep report: no penultimate layer, or a run without its spread"
expect_error "sweep --project-classes" "--project-classes 0,1,7" "$LSR" sweep --data data --model "$MODEL" \
    --smoothing 0 --seeds 1 --epochs 1 --out swp --project-classes 0,1,7
[ ! -e swp/runs/eps0-seed0.json ] && ok || bad "sweep --project-classes: refused only after its runs"
expect_error "sweep --project-classes by --class-names" "'white' is not a class" "$LSR" sweep --data data \
    --model "$MODEL" --smoothing 0 --seeds 1 --epochs 1 --out swp --class-names names.txt --project-classes dark,white,light
[ ! -e swp/runs/eps0-seed0.json ] && ok || bad "sweep --project-classes with --class-names: refused only after its runs"
# (refused before the runs: one line, not the run's own lines with it)
expect_error "sweep --class-names with a name twice" "both named 'a'" "$LSR" sweep --data data \
    --model "$MODEL" --smoothing 0 --seeds 1 --epochs 1 --out swp --class-names twice.txt --project-classes a,b,2
expect_error "sweep --class-names with a name twice, no --project-classes" "both named 'a'" "$LSR" sweep \
    --data data --model "$MODEL" --smoothing 0 --seeds 1 --epochs 1 --out swp --class-names twice.txt

# ---- sweeps: one checkpoint per run, seeds from --seed on, a default --val that fits ----
SWC=(sweep --data data --model "$MODEL" --smoothing 0,0.1 --seeds 2 --seed 5 --epochs 2 --val 96 --quiet)
"$LSR" "${SWC[@]}" --out swc --checkpoint swc.ckpt > /dev/null 2> err.txt && ok ||
    bad "sweep --checkpoint: rc $?, $(cat err.txt)"
for run in eps0-seed5 eps0.1-seed5 eps0-seed6 eps0.1-seed6; do
    [ -s swc-$run.ckpt ] && [ -s swc/runs/$run.safetensors ] && ok || bad "sweep --checkpoint: no checkpoint for $run"
done
[ "$(cut -d, -f2 swc/results.csv | tail -n +2 | tr '\n' ' ')" = "5 5 6 6 " ] && ok ||
    bad "sweep --seed 5: seeds $(cut -d, -f2 swc/results.csv | tr '\n' ' ')"
expect_error "sweep --resume" "run the same lsr sweep command again" \
    "$LSR" "${SWC[@]}" --out swc --resume swc-eps0-seed5.ckpt
expect_error "train --resume of a sweep's run" "lsr sweep's run eps0-seed5" "$LSR" train --resume swc-eps0-seed5.ckpt
# kill -9 in a sweep's run: the same command goes on from that run's checkpoint
SWK=(sweep --data data --model "$MODEL" --smoothing 0.1 --seeds 1 --epochs 300 --val 96)
"$LSR" "${SWK[@]}" --out swk-reference --quiet > /dev/null 2>&1
"$LSR" "${SWK[@]}" --out swk --checkpoint swk.ckpt --checkpoint-every 40 --quiet > /dev/null 2>&1 &
pid=$!
for i in $(seq 400); do [ -e swk-eps0.1-seed0.ckpt ] && break; sleep 0.01; done # under way
sleep "0.0$((RANDOM % 10))"
kill -9 $pid 2> /dev/null
wait $pid 2> /dev/null
if [ -s swk/runs/eps0.1-seed0.json ] || [ ! -s swk-eps0.1-seed0.ckpt ]; then
    bad "sweep kill -9: not killed in the middle of its run"
else
    expect_error "sweep: a checkpoint of other settings" "swk-eps0.1-seed0.ckpt: holds a run with other settings" \
        "$LSR" "${SWK[@]}" --epochs 301 --out swk --checkpoint swk.ckpt --checkpoint-every 40 --quiet
    "$LSR" "${SWK[@]}" --out swk --checkpoint swk.ckpt --checkpoint-every 40 > /dev/null 2> err.txt &&
        grep -q "resuming at epoch" err.txt && ok || bad "sweep kill -9: not resumed: $(tail -n 3 err.txt)"
    cmp -s swk/runs/eps0.1-seed0.safetensors swk-reference/runs/eps0.1-seed0.safetensors && ok ||
        bad "sweep kill -9: the resumed run's model differs"
fi
"$LSR" sweep --data data --model "$MODEL" --smoothing 0 --seeds 1 --epochs 1 --out swv --quiet > /dev/null 2> err.txt &&
    grep -q "holding out 76 of the 768 training examples" err.txt && ok || bad "sweep's default --val: $(cat err.txt)"
# the sweep's flags in any spelling getopt takes: --val=N is not replaced by
# the default, --smoothing=LIST and --seeds=N are the sweep's
"$LSR" sweep --data data --model "$MODEL" --smoothing=0 --seeds=1 --epochs 1 --val=96 --out swv2 --quiet > /dev/null 2> err.txt &&
    ! grep -q "holding out" err.txt && [ "$(ls swv2/runs/*.safetensors | wc -l)" -eq 1 ] && ok ||
    bad "sweep --val=96 --smoothing=0 --seeds=1: $(cat err.txt)"

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
