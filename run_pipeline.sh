#!/usr/bin/env bash
# The whole two-stream pipeline, stage by stage, through the public commands (flowprep, python -m train):
#   data -> extract -> quality -> fit spatial/temporal -> test (25 frames x 10 crops) -> fuse (avg, SVM) -> results
# With no arguments it runs the bundled demo (colour and motion classes, generated into data/sample/) end to end.
# Safe to run again: a stage whose command has not changed since it finished is reused; an interrupted stage
# resumes (extraction skips finished shards, training continues from its last checkpoint).
set -euo pipefail
CALLER="$PWD"  # relative paths given on the command line are the caller's, not the repository's
cd "$(dirname "$0")"

usage() {
    cat <<'EOF'
Usage: ./run_pipeline.sh [options]

Runs every stage of the two-stream pipeline and prints a table like the paper's (spatial, temporal, average
fusion, SVM fusion; with --all-rows also the temporal net's settings of Table 1b, and for the demo Table 2).
With no options: the bundled demo, every row, on the CPU (about 6 minutes on 2 cores, the first-time install
included; docs/DEMO.md has each stage's time).

Options:
  --dataset NAME     demo (default), ucf101, hmdb51 or kinetics
  --root DIR         the dataset's videos (<root>/<Class>/<video>.avi; kinetics: anywhere below it, named
                     <youtube_id>_<start>_<end>.<ext>); demo: where to generate it (data/sample)
  --split-dir DIR    the split files (ucf101: classInd.txt, trainlist0N.txt, testlist0N.txt; hmdb51: the
                     *_test_splitN.txt files; kinetics: train.csv and validate.csv); default: looked for in and
                     beside --root
  --split N          1, 2 or 3 (default 1; the demo has split 1 only)
  --out DIR          output folder (default: runs/<dataset>)
  --device DEV       auto (default), cpu, cuda or cuda:N: for extraction, training and testing
  --jobs N           extraction processes (default: the number of cores)
  --arch NAME        network of both streams (demo: tiny; real data: resnet18; also cnn_m_2048, resnet50, vgg16)
  --pretrained FILE  local ImageNet weights of --arch (.pth) for the spatial net, whose last layer then learns
                     (the paper's Table 1a; nothing is downloaded); the temporal nets train from scratch, as in
                     the paper (`--fit-args "--pretrained FILE"` gives them the cross-modality initialisation)
  --epochs N         training epochs of each stream (an epoch: as many samples as training videos; real data
                     draws them uniformly over classes, --balanced)
  --batch-size N     training batch (default: demo 16, real data 256 as in the paper)
  --demo-args "…"   more flags for `flowprep make-demo` (e.g. "--train-groups 3 --clips 1"; see its --help)
  --extract-args "…" more flags for `flowprep extract` (e.g. "--size 340x256 --backend torch"; real data is
                     extracted at --short-side 256, 341x256, unless a --size or --short-side is given here:
                     --short-side 0 keeps the videos' size)
  --fit-args "…"     more flags for `python -m train fit` (both streams)
  --all-rows         also the temporal net's settings of the paper's Table 1b: L = 1 and 5 flows, no mean
                     subtraction, trajectory stacking, and bi-directional flow when the extraction has
                     --backward (the demo's does); for the demo also its Table 2 (multi-task learning) on a
                     small companion dataset (data/sample_small): the temporal net trained on it alone,
                     fine-tuned from the demo's, with the demo's classes added, and multi-task with two heads
                     (all of it the default for the demo)
  --main-rows        only the two streams and their fusion (the default for real datasets)
  --no-table2        the demo's rows without Table 2 (about 2 minutes less)
  --fresh            forget finished stages and run everything again (extraction still reuses its shards)
  -h, --help         this help

Writes <out>/results.json (keys spatial, temporal, fusion_avg, fusion_svm, and with all rows temporal_L1,
temporal_L5, temporal_no_mean_subtraction, temporal_trajectory, temporal_bidirectional: top-1 on the test
split, 0-1; chance; for the demo with all rows, table2 = {scratch, fine_tune, added_classes, multi_task, chance}
on the small dataset's test split),
the stages' logs in <out>/logs/, and the plots (confusion matrices, quality report) whose paths it prints.
EOF
}

die() { echo "run_pipeline: $*" >&2; exit 2; }

SIZE_DEFAULT=() DATASET=demo ROOT="" SPLIT_DIR="" SPLIT=1 OUT="" DEVICE=auto JOBS="" ARCH="" PRETRAINED="" EPOCHS="" BATCH=""
DEMO_ARGS="" EXTRACT_ARGS="" FIT_ARGS="" FRESH=0 ALL_ROWS="" TABLE2=1
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --fresh) FRESH=1; shift; continue ;;
        --all-rows) ALL_ROWS=1; shift; continue ;;
        --main-rows) ALL_ROWS=0; shift; continue ;;
        --no-table2) TABLE2=0; shift; continue ;;
    esac
    case "$1" in
        --dataset|--root|--split-dir|--split|--out|--device|--jobs|--arch|--pretrained|--epochs|--batch-size) ;;
        --demo-args|--extract-args|--fit-args) ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    [ $# -ge 2 ] || die "$1 needs a value (see --help)"
    case "$1" in
        --dataset) DATASET="$2" ;;
        --root) ROOT="$2" ;;
        --split-dir) SPLIT_DIR="$2" ;;
        --split) SPLIT="$2" ;;
        --out) OUT="$2" ;;
        --device) DEVICE="$2" ;;
        --jobs) JOBS="$2" ;;
        --arch) ARCH="$2" ;;
        --pretrained) PRETRAINED="$2" ;;
        --epochs) EPOCHS="$2" ;;
        --batch-size) BATCH="$2" ;;
        --demo-args) DEMO_ARGS="$2" ;;
        --extract-args) EXTRACT_ARGS="$2" ;;
        --fit-args) FIT_ARGS="$2" ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift 2
done

case "$SPLIT" in 1|2|3) ;; *) die "--split must be 1, 2 or 3, got $SPLIT" ;; esac
for v in "--jobs:$JOBS" "--epochs:$EPOCHS" "--batch-size:$BATCH"; do  # checked before any work is thrown away
    case "${v#*:}" in "") ;; *[!0-9]*|0*) die "${v%%:*} must be a whole number above 0, got ${v#*:}" ;; esac
done
[[ "$DEVICE" =~ ^(auto|cpu|cuda(:[0-9]+)?)$ ]] || die "--device must be auto, cpu, cuda or cuda:N, got $DEVICE"
abs() { case "$1" in ""|/*) printf '%s' "$1" ;; *) printf '%s/%s' "$CALLER" "$1" ;; esac; }
ROOT="$(abs "$ROOT")" SPLIT_DIR="$(abs "$SPLIT_DIR")" OUT="$(abs "$OUT")" PRETRAINED="$(abs "$PRETRAINED")"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
OUT="${OUT:-runs/$DATASET}"

# Per-dataset settings. The demo's are sized for 2 CPU cores: 64x64 videos, a tiny ConvNet on 56x56 crops.
case "$DATASET" in
    demo)
        ROOT="${ROOT:-data/sample}"
        [ "$SPLIT" = 1 ] || die "the demo dataset has split 1 only"
        SPLIT_DIR="${SPLIT_DIR:-$ROOT}"
        FORMAT=ucf101 ARCH="${ARCH:-tiny}" EPOCHS_S="${EPOCHS:-60}" EPOCHS_T="${EPOCHS:-100}" BATCH="${BATCH:-16}"
        # the monitor (a test-split pass) every 5 epochs: every epoch would cost a minute of the demo
        TRAIN_ARGS=(--crop-size 56 --lr 0.03 --dropout 0 --num-workers 0 --threads 2 --val-every 5)
        TEST_ARGS=(--num-workers 0 --batch-size 16)
        # the SVM's training scores: 5 positions x 2 crops per training video are plenty for 6 classes
        SVM_TRAIN_ARGS=(--test-frames 5 --test-crops 2)
        # TV-L1 with 2 pyramid levels and 3 warps: the demo's motions are a pixel or two per frame at 64x64 (2.5x
        # faster than OpenCV's 5 levels and 5 warps, 0.02 px mean EPE from their flow on these videos)
        # --backward: the backward flow too, for the bi-directional row of Table 1b
        EXTRACT_DEFAULTS=(--nscales 2 --warps 3 --backward)
        ALL_ROWS="${ALL_ROWS:-1}"
        QUALITY_SAMPLE=20 ;;
    ucf101|hmdb51|kinetics)
        [ -n "$ROOT" ] || die "--dataset $DATASET needs --root DIR, the folder of its videos"
        [ -d "$ROOT" ] || die "--root $ROOT is not a folder"
        if [ -z "$SPLIT_DIR" ]; then
            case "$DATASET" in
                ucf101) names=(ucfTrainTestlist .) ;; hmdb51) names=(testTrainMulti_7030_splits .) ;;
                kinetics) names=(annotations splits .) ;;
            esac
            marker=classInd.txt; [ "$DATASET" = hmdb51 ] && marker="*_test_split1.txt"
            [ "$DATASET" = kinetics ] && marker=train.csv
            for d in "${names[@]/#/$ROOT/}" "${names[@]/#/$ROOT/../}"; do
                # shellcheck disable=SC2086  # the marker may be a glob
                if compgen -G "$d/$marker" >/dev/null; then SPLIT_DIR="$d"; break; fi
            done
            [ -n "$SPLIT_DIR" ] || die "no split files found in or beside $ROOT; give --split-dir DIR"
        fi
        [ "$DATASET" != kinetics ] || [ "$SPLIT" = 1 ] || die "Kinetics has one split (train.csv / validate.csv)"
        FORMAT="$DATASET" ARCH="${ARCH:-resnet18}" EPOCHS_S="${EPOCHS:-30}" EPOCHS_T="${EPOCHS:-100}"
        BATCH="${BATCH:-256}"
        # the paper's batches, uniform over classes; its frames, rescaled to a short side of 256 (UCF-101 and
        # HMDB-51 are 320x240: 341x256, as the paper rescales them; mmaction2 and TSN use 340x256; Kinetics'
        # default is already 256)
        TRAIN_ARGS=(--num-workers "$JOBS" --balanced)
        TEST_ARGS=(--num-workers "$JOBS")
        SVM_TRAIN_ARGS=() EXTRACT_DEFAULTS=()
        [ "$DATASET" = kinetics ] || SIZE_DEFAULT=(--short-side 256)
        ALL_ROWS="${ALL_ROWS:-0}"
        QUALITY_SAMPLE=100 ;;
    *) die "unknown --dataset $DATASET; choose demo, ucf101, hmdb51 or kinetics" ;;
esac
[ -z "$PRETRAINED" ] || [ -f "$PRETRAINED" ] || die "--pretrained $PRETRAINED: no such file"
# shellcheck disable=SC2206  # word-splitting the pass-through flags is the point
EXTRA_D=($DEMO_ARGS) EXTRA_X=($EXTRACT_ARGS) EXTRA_F=($FIT_ARGS)
# a frame size of the user's own (--size W x H, --short-side N, or their =forms) replaces the paper's short side
for a in "${EXTRA_X[@]:+${EXTRA_X[@]}}"; do
    case "${a%%=*}" in --size|--short*) SIZE_DEFAULT=() ;; esac  # --short*: argparse takes abbreviations
done
# --train-layers in --fit-args reaches the temporal nets too, which get no --pretrained weights
[[ " ${EXTRA_F[*]:-} " != *" --train-layers"* ]] || die "--fit-args: --train-layers reaches every net, and the" \
    "temporal ones train from scratch; with --pretrained the spatial net trains its last layer by default"

echo "== two-stream pipeline: $DATASET split $SPLIT -> $OUT (device $DEVICE, $JOBS jobs)"
T0=$SECONDS
source scripts/ensure_venv.sh  # sets $PY; creates the venv and installs the project the first time
FLOWPREP=("$PY" -m flowprep)
TRAIN=("$PY" -m train)
export PYTHONUNBUFFERED=1
if [ "$DATASET" != demo ]; then  # the split files, read now: a mistake there surfaced at training, after extraction
    split_error="$("$PY" - "$FORMAT" "$SPLIT_DIR" "$SPLIT" 2>&1 <<'PYEOF'
import logging, sys
from flowprep.datasets.splits import load_split
from flowprep.errors import FlowprepError
logging.disable(logging.WARNING)  # fit says those, with the shards at hand
try:
    load_split(sys.argv[1], sys.argv[2], int(sys.argv[3]))
except FlowprepError as e:
    sys.exit(str(e))
PYEOF
)" || die "split $SPLIT of $DATASET in $SPLIT_DIR: $split_error"
fi

STATE="$OUT/.stages" LOGS="$OUT/logs"
mkdir -p "$STATE" "$LOGS" 2>/dev/null || die "cannot create $OUT (read-only, full, or not a folder): give a writable --out"
[ "$FRESH" = 0 ] || rm -f "$STATE"/*.done
SHARDS="$OUT/shards"
if [ ${#SIZE_DEFAULT[@]} -gt 0 ] && [ -f "$SHARDS/flowprep.json" ]; then
    # shards extracted at another frame size (before the paper's short side was the default): resumed at theirs
    made="$("$PY" -c 'import json, sys; r = json.load(open(sys.argv[1]))["identity"]["resize"]
print(r.get("short_side"), r.get("size"))' "$SHARDS/flowprep.json" 2>/dev/null || true)"
    if [ "$made" != "256 None" ]; then
        SIZE_DEFAULT=()
        echo "note: $SHARDS was extracted at another frame size ($made); it goes on at that size (a new --out" \
            "extracts at the paper's short side of 256)"
    fi
fi
STAGE_N=0 STAGE_TOTAL=10 RERUN=0
[ "$ALL_ROWS" = 1 ] && STAGE_TOTAL=$((STAGE_TOTAL + 8))
BACKWARD=0  # the extraction stores backward flow: the bi-directional row can be trained
[[ " ${EXTRACT_DEFAULTS[*]:-} ${EXTRA_X[*]:-} " == *" --backward "* ]] && BACKWARD=1
[ "$ALL_ROWS" = 1 ] && [ "$BACKWARD" = 1 ] && STAGE_TOTAL=$((STAGE_TOTAL + 2))
[ "$DATASET" = demo ] && STAGE_TOTAL=$((STAGE_TOTAL + 1))
[ "$DATASET" = demo ] && [ "$ALL_ROWS" = 1 ] || TABLE2=0  # Table 2 is the demo's (its small companion dataset)
[ "$TABLE2" = 1 ] && STAGE_TOTAL=$((STAGE_TOTAL + 10))

# require_ours DIR: die unless DIR is missing or empty, or flowprep wrote it (its flowprep.json or index.jsonl):
# a folder of other files given as --out is never removed
require_ours() {
    [ ! -e "$1" ] || [ -f "$1/flowprep.json" ] || [ -f "$1/index.jsonl" ] || [ -z "$(ls -A "$1")" ] \
        || die "$1 holds files flowprep did not write; give another --out (nothing was removed)"
}

# remove_shards DIR: delete a shard folder flowprep wrote
remove_shards() {
    require_ours "$1"
    rm -rf "$1"
}

# data_sum DATASET_MARKER: a checksum of the dataset's marker file (the demo's settings), "none" if it has none
data_sum() {
    cksum < "$1" 2>/dev/null || echo none
}

# drop_stale_shards DIR DATASET_MARKER RECORD: DIR's shards were made from the dataset whose marker's checksum
# RECORD holds; if the marker now differs, they are of other videos: removed. Records the current one.
drop_stale_shards() {
    local now
    now="$(data_sum "$2")"
    if [ ! -f "$3" ]; then
        require_ours "$1"
    elif [ "$(cat "$3")" != "$now" ]; then
        remove_shards "$1"
    fi
    echo "$now" > "$3"
}

# same_data DATASET_MARKER RECORD: whether the dataset is the one RECORD says the shards were made from (or none
# is recorded yet)
same_data() {
    [ ! -f "$2" ] || [ "$(cat "$2")" = "$(data_sum "$1")" ]
}

# stage NAME "what it does" CMD...: run CMD unless it finished before with the same command line. A stage that
# runs makes every later stage run too (their inputs may have changed). Output goes to the screen and the log.
# If RESUME_FILE is set and exists, and this very command was interrupted in an earlier run with nothing before
# it re-run since, "--resume RESUME_FILE" is added (training continues from its last checkpoint); otherwise a
# stage with RESUME_FILE gets "--restart" (it trains from scratch, as its inputs or flags changed).
RESUME_FILE=""

# run_stage NAME COMMAND...: the command in a process group of its own (set -m), its output to the screen and
# $LOGS/NAME.log, its status in STAGE_RC. This script waits with `wait`, which a signal interrupts: a Ctrl-C,
# SIGTERM (Slurm, timeout, kill), SIGHUP or SIGUSR1 to the script is passed on to the stage, which stops cleanly,
# says so, and is waited for. In a plain pipeline bash died of a SIGTERM at once and left the stage running, its
# output folder locked, and the requeued job was refused.
STAGE_PID=""
run_stage() {
    local name="$1"; shift
    # The log's writers ignore the signals a scheduler sends every process (tee -i: Ctrl-C too): they must live to
    # write what the stage says as it stops. Its stdin is /dev/null: a stage in a background group that read the
    # terminal would be stopped (SIGTTIN), and the script with it.
    local writer="$STATE/$name.writer"
    rm -f "$writer"
    set -m
    "$@" < /dev/null > >(write_log "$writer" "$name") 2>&1 &
    STAGE_PID=$!
    set +m
    STAGE_RC=""
    while [ -z "$STAGE_RC" ]; do
        local w=0
        wait "$STAGE_PID" || w=$?
        kill -0 "$STAGE_PID" 2>/dev/null || STAGE_RC=$w  # alive (or not yet reaped): a signal woke the wait
    done
    # the log's writer is the stage's child, not this script's: its last lines before this script's (it ends
    # when the stage's output does; 10 s at most, for a stray worker still holding that output)
    local n=0 pid
    pid=$(cat "$writer" 2>/dev/null || true)
    while [ -n "$pid" ] && running "$pid" && [ "$n" -lt 200 ]; do sleep 0.05; n=$((n + 1)); done
    rm -f "$writer"
    STAGE_PID=""
}

write_log() {  # write_log PIDFILE NAME: a stage's output (stdin) to $LOGS/NAME.log and the screen; see run_stage
    trap '' TERM HUP USR1
    echo "$BASHPID" > "$1"
    if [ -n "${BAR_EPOCHS:-}" ]; then  # training: one bar on the screen, every epoch's line in the log
        tee -i "$LOGS/$2.log" | "$PY" scripts/epoch_bar.py --epochs "$BAR_EPOCHS" --desc "$2"
    else  # tee -i: a Ctrl-C must not end the log's writer before the command has said it stopped
        exec tee -i "$LOGS/$2.log"
    fi
}

running() {  # whether process $1 has not ended: a zombie has (its new parent may take a second to reap it)
    kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0  # no /proc (macOS): kill -0's answer
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

pass_on() {  # a signal to this script: to the running stage (it stops its own workers), or, between stages, the end
    if [ -n "$STAGE_PID" ]; then
        kill -s "$1" "$STAGE_PID" 2>/dev/null || true  # not its group: the log's writer is in it
    else
        echo "run_pipeline: stopped by SIG$1" >&2
        exit "$2"
    fi
}
trap 'pass_on INT 130' INT
trap 'pass_on TERM 143' TERM
trap 'pass_on HUP 129' HUP
trap 'pass_on USR1 138' USR1

stage() {
    local name="$1" what="$2"; shift 2
    STAGE_N=$((STAGE_N + 1))
    local marker="$STATE/$name.done" started="$STATE/$name.started" key="$*" resume=()
    # a training stage that does not resume starts over: `fit` alone would continue from --out's checkpoint
    [ -n "$RESUME_FILE" ] && resume=(--restart)
    if [ "$RERUN" = 0 ] && [ -f "$marker" ] && [ "$(cat "$marker")" = "$key" ]; then
        echo "[$STAGE_N/$STAGE_TOTAL] $name: finished before, reused ($what)"
        RESUME_FILE=""
        return 0
    fi
    if [ -n "$RESUME_FILE" ] && [ -f "$RESUME_FILE" ] && [ "$RERUN" = 0 ] && [ -f "$started" ] \
            && [ "$(cat "$started")" = "$key" ]; then
        resume=(--resume "$RESUME_FILE")
    fi
    RESUME_FILE="" RERUN=1
    rm -f "$marker"
    echo "$key" > "$started"
    local resuming=""
    [ "${resume[0]:-}" = --resume ] && resuming=" (resuming from ${resume[1]})"
    echo "[$STAGE_N/$STAGE_TOTAL] $name: $what$resuming"
    echo "    \$ $*" | sed "s#$PY#python#"
    local t=$SECONDS rc
    set +e
    run_stage "$name" "$@" "${resume[@]:+${resume[@]}}"
    rc=$STAGE_RC
    set -e
    if [ "$rc" = 1 ] && [ "${ALLOW_SOME_FAILED:-0}" = 1 ]; then  # the batch finished; some inputs were bad
        echo "    some inputs could not be used (listed above and in $LOGS/$name.log); going on with the rest"
        rc=0
    fi
    case "$rc" in 129|130|138|143)  # stopped by a signal (Ctrl-C, SIGTERM, SIGHUP, SIGUSR1): said, not a failure
        echo "" >&2
        echo "run_pipeline: interrupted in stage '$name' after $((SECONDS - t)) s; run the same command again to" \
            "resume (finished stages are reused, this one continues where it stopped)" >&2
        exit "$rc"
    esac
    if [ "$rc" != 0 ]; then
        echo "" >&2
        echo "run_pipeline: stage '$name' FAILED (exit $rc) after $((SECONDS - t)) s: $what" >&2
        echo "run_pipeline: its output is in $LOGS/$name.log. Fix the cause and run the same command again:" >&2
        echo "run_pipeline: finished stages are reused and this one resumes where it can." >&2
        exit "$rc"
    fi
    echo "$key" > "$marker"
    echo "    done in $((SECONDS - t)) s"
}

# fit NAME STREAM EPOCHS [FLAGS...]: train one row of the table (an interrupted run continues from its last
# checkpoint) into $OUT/NAME.
fit() {
    local name="$1" stream="$2" epochs="$3" out="$OUT/$1" pre=()
    shift 3
    [ "$stream" != spatial ] || [ -z "$PRETRAINED" ] || pre=(--pretrained "$PRETRAINED")  # the paper's spatial net
    RESUME_FILE="$out/checkpoint.pt"
    BAR_EPOCHS="$epochs" stage "fit-$name" "train the $stream ConvNet ($ARCH, $epochs epochs${*:+, $*})" \
        "${TRAIN[@]}" fit --shards "${FIT_SHARDS:-$SHARDS}" --dataset "$FORMAT" --split "$SPLIT" \
        --split-dir "${FIT_SPLIT_DIR:-$SPLIT_DIR}" \
        --stream "$stream" --arch "$ARCH" --epochs "$epochs" --batch-size "$BATCH" --device "$DEVICE" \
        --out "$out" --no-progress "${TRAIN_ARGS[@]}" "${pre[@]:+${pre[@]}}" "$@" \
        "${EXTRA_F[@]:+${EXTRA_F[@]}}"
}

if [ "$DATASET" = demo ]; then
    # the demo folder regenerated with other settings by a run with another --out: make it this run's again
    same_data "$ROOT/demo.json" "$STATE/shards.data" || rm -f "$STATE/data.done"
    stage data "generate the demo videos into $ROOT (UCF-101 layout; appearance and motion each tell part)" \
        "${FLOWPREP[@]}" make-demo --out "$ROOT" "${EXTRA_D[@]:+${EXTRA_D[@]}}"
    # other demo videos than the shards were made from (another seed or size, written by a run with another
    # --out into the same folder): their shards are stale. Not --fresh, --jobs or --device: the same videos
    drop_stale_shards "$SHARDS" "$ROOT/demo.json" "$STATE/shards.data"
fi
KINETICS_ARGS=(); [ "$FORMAT" != kinetics ] || KINETICS_ARGS=(--split-dir "$SPLIT_DIR")
EXTRACT=("${FLOWPREP[@]}" extract --dataset "$FORMAT" --root "$ROOT" --out "$SHARDS" --jobs "$JOBS" --device "$DEVICE"
    "${KINETICS_ARGS[@]:+${KINETICS_ARGS[@]}}" "${EXTRACT_DEFAULTS[@]:+${EXTRACT_DEFAULTS[@]}}"
    "${SIZE_DEFAULT[@]:+${SIZE_DEFAULT[@]}}"
    "${EXTRA_X[@]:+${EXTRA_X[@]}}")
# the settings of the shards, not how they are made (--jobs, --device): others (e.g. a newer demo's) start afresh
SETTINGS_KEY="$(printf '%s\n' "${EXTRACT[@]}" | sed '/^--jobs$/,+1d; /^--device$/,+1d' | tr '\n' ' ')"
if [ "$DATASET" = demo ] && [ -f "$STATE/extract.settings" ] && [ "$(cat "$STATE/extract.settings")" != "$SETTINGS_KEY" ]; then
    remove_shards "$SHARDS"
fi
echo "$SETTINGS_KEY" > "$STATE/extract.settings"
ALLOW_SOME_FAILED=1 stage extract "videos -> TV-L1 flow + RGB frames as JPEG in HDF5 shards ($SHARDS)" "${EXTRACT[@]}"
stage quality "what the JPEG shards cost in flow accuracy and save in bytes ($OUT/quality)" \
    "${FLOWPREP[@]}" quality --shards "$SHARDS" --sample "$QUALITY_SAMPLE" --report "$OUT/quality"
# the rows of the paper's tables: the two streams (Table 3) and, with all rows, the temporal net's settings
# (Table 1b: flow stack length, mean subtraction, trajectory stacking)
fit spatial spatial "$EPOCHS_S"
fit temporal temporal "$EPOCHS_T"
ROWS_RUN=(spatial temporal)
if [ "$ALL_ROWS" = 1 ]; then
    fit temporal_L1 temporal "$EPOCHS_T" --flow-length 1
    fit temporal_L5 temporal "$EPOCHS_T" --flow-length 5
    fit temporal_no_mean_subtraction temporal "$EPOCHS_T" --no-mean-subtraction
    fit temporal_trajectory temporal "$EPOCHS_T" --stacking trajectory
    ROWS_RUN+=(temporal_L1 temporal_L5 temporal_no_mean_subtraction temporal_trajectory)
    if [ "$BACKWARD" = 1 ]; then
        fit temporal_bidirectional temporal "$EPOCHS_T" --stacking bidirectional
        ROWS_RUN+=(temporal_bidirectional)
    fi
fi
for row in "${ROWS_RUN[@]}"; do
    stage "test-$row" "score the test videos: 25 frames x 10 crops, softmax averaged per video" \
        "${TRAIN[@]}" test --checkpoint "$OUT/$row/best.pt" --subset test --device "$DEVICE" --no-progress \
        "${TEST_ARGS[@]}"
done
for stream in spatial temporal; do
    stage "test-$stream-train" "score the training videos (the fusion SVM learns from them)" \
        "${TRAIN[@]}" test --checkpoint "$OUT/$stream/best.pt" --subset train --device "$DEVICE" --no-progress \
        "${TEST_ARGS[@]}" "${SVM_TRAIN_ARGS[@]:+${SVM_TRAIN_ARGS[@]}}"
done
mkdir -p "$OUT/fusion"
for method in avg svm; do
    stage "fuse-$method" "fuse the two streams' scores ($method)" \
        "${TRAIN[@]}" fuse --scores "$OUT/spatial/scores.npz" "$OUT/temporal/scores.npz" --method "$method" \
        --out "$OUT/fusion/$method.npz"
done

if [ "$TABLE2" = 1 ]; then
    # Table 2 in miniature, after the rest (adding it to a finished demo runs only its stages): a small dataset
    # (2 training videos per class) whose four classes are the demo's motion programs, scored on its own test
    # split (docs/DEMO.md says why each row lands where it does). It takes the demo's seed and video size from
    # --demo-args, not its split sizes (it has its own).
    SMALL_ROOT="${ROOT%/}_small" SMALL_SHARDS="$OUT/shards_small" SMALL_D=()
    for ((i = 0; i + 1 < ${#EXTRA_D[@]}; i++)); do
        case "${EXTRA_D[i]}" in --seed|--frames|--size) SMALL_D+=("${EXTRA_D[i]}" "${EXTRA_D[i + 1]}") ;; esac
    done
    same_data "$SMALL_ROOT/demo.json" "$STATE/shards_small.data" || rm -f "$STATE/data-small.done"
    stage data-small "generate the small companion dataset into $SMALL_ROOT (Table 2)" \
        "${FLOWPREP[@]}" make-demo --small --out "$SMALL_ROOT" "${SMALL_D[@]:+${SMALL_D[@]}}"
    drop_stale_shards "$SMALL_SHARDS" "$SMALL_ROOT/demo.json" "$STATE/shards_small.data"
    stage extract-small "the small dataset's flow ($SMALL_SHARDS)" \
        "${FLOWPREP[@]}" extract --dataset ucf101 --root "$SMALL_ROOT" --out "$SMALL_SHARDS" --jobs "$JOBS" \
        --device "$DEVICE" --nscales 2 --warps 3
    # every row 150 epochs (an epoch of the last two also visits the demo's 108 videos: 8x the steps; with 100
    # multi-task missed one test video on seed 0). --balanced: the paper's batches, uniform over classes, so
    # the two datasets' classes are drawn alike. Multi-task starts from the demo net's trunk like fine-tuning
    # (the paper's starts from scratch): from scratch it tied fine-tuning at 100% but on one seed of three
    # missed one test video of 48 (docs/DEMO.md)
    SMALL_E="${EPOCHS:-150}" JOINT_E="${EPOCHS:-150}"
    FIT_SHARDS="$SMALL_SHARDS" FIT_SPLIT_DIR="$SMALL_ROOT" fit table2_scratch temporal "$SMALL_E" --balanced
    FIT_SHARDS="$SMALL_SHARDS" FIT_SPLIT_DIR="$SMALL_ROOT" fit table2_fine_tune temporal "$SMALL_E" --balanced \
        --init-from "$OUT/temporal/best.pt"
    FIT_SHARDS="$SMALL_SHARDS" FIT_SPLIT_DIR="$SMALL_ROOT" fit table2_added_classes temporal "$JOINT_E" --balanced \
        --add-classes "$FORMAT" "$SHARDS" "$SPLIT_DIR"
    FIT_SHARDS="$SMALL_SHARDS" FIT_SPLIT_DIR="$SMALL_ROOT" fit table2_multi_task temporal "$JOINT_E" --balanced \
        --also "$FORMAT" "$SHARDS" "$SPLIT_DIR" --init-from "$OUT/temporal/best.pt"
    for row in table2_scratch table2_fine_tune table2_added_classes table2_multi_task; do
        stage "test-$row" "score the small dataset's test videos: 25 frames x 10 crops" \
            "${TRAIN[@]}" test --checkpoint "$OUT/$row/best.pt" --subset test --device "$DEVICE" --no-progress \
            "${TEST_ARGS[@]}"
    done
fi

# results.json and the table: always rebuilt from the stages' outputs (cheap)
CHECK=(); [ "$DATASET" = demo ] && CHECK=(--check-targets)
echo
SECS=(); [ "$RERUN" = 0 ] || SECS=(--seconds "$((SECONDS - T0))")  # all reused: the run's own time is kept
"${TRAIN[@]}" table --runs "$OUT" --dataset "$DATASET" --split "$SPLIT" "${SECS[@]:+${SECS[@]}}" \
    "${CHECK[@]:+${CHECK[@]}}" || echo "run_pipeline: a demo target was missed (above); see docs/DEMO.md" >&2
echo
echo "plots:"
find "$OUT" -maxdepth 3 -name "*.png" -path "$OUT/*" | sort | sed 's/^/  /'
echo "results: $OUT/results.json"
echo "== finished in $((SECONDS - T0)) s"
