#!/usr/bin/env bash
# Train AVSyncD-mini and I2VD-mini on the lent GPU, right after benchmarks/gpu_train_mini.sh
# on the same machine (it reuses that script's work folder: python, synth, clip cache, mini base).
#
#   OUT=/where/results/go bash benchmarks/gpu_train_avsyncd.sh --minutes 3
#
# Run from the repository root.  Stages:
#   0  python: the install gpu_train_mini.sh made in $WORK/site (rebuilt from this checkout when it
#      lacks asva_bench.models.avsyncd.train); checks the base bundle, clip cache, audio encoder.
#      On a fresh machine (no synth in $WORK): runs `gpu_train_mini.sh --stages synth,cache` first,
#      and unpacks the base from --base-tar (the mini_base.tar.gz an earlier call returned)
#   1  training: AVSyncD-mini and I2VD-mini, both at once on the one GPU (tiny models are
#      launch-bound, so two processes share the GPU at almost no cost to each; --sequential to
#      run them one after the other), --minutes / --i2vd-minutes of training each, from
#      $WORK/train/mini_base/mini_base and the clip cache $WORK/data/frames
#   2  preview: 6 synth test clips (one per class), rows = ground truth, AVSyncD eta 4,
#      AVSyncD eta 4 with the audio 0.5 s later, I2VD -> preview.png; the last audio probe of
#      the loss log (shift_gain > 0: the model uses the audio's timing)
#   3  (--test-runs) run and score the synth test protocol (450 clips each) for AVSyncD eta 1/4/8,
#      I2VD and Static, side by side, with the new weights installed as the shipped ones (needs
#      the shipped mini evaluators); only run.json / results.json / scores.jsonl come back (the
#      clips, ~10-40 kB each, would exceed the 16 MiB a file the device tool returns)
#   4  pack (the device tool returns <= 8 files; gpu_train_mini.sh uses 5, this script 2):
#        avsyncd_mini.tar.gz   weights/avsyncd_mini/ and weights/i2vd_mini/ (the shipped layout:
#                              avsyncd_config.json, avsyncd_trainable.safetensors,
#                              avsyncd_training.json), train/<model>/{loss_log.jsonl,
#                              train_config.json,summary.json}, preview.png,
#                              runs/<name>/{run,results}.json + scores.jsonl (--test-runs)
#        gpu_train_avsyncd.log everything this script printed
#
# Options (defaults in brackets):
#   --minutes M [3]  --i2vd-minutes M [= --minutes]  --steps N [none: time only]
#   --batch-size B [128]  --lr LR [5e-4]  --device D [cuda]  --sequential  --test-runs
#   --sample-steps N [the adapter's default: 20 for mini] (preview and test runs)
#   --audio-encoder FILE [the shipped mini-embedding]  --work DIR [/tmp/asva_gpu]  --out DIR [$OUT]
#   --python PY [python3]  --base DIR [$WORK/train/mini_base/mini_base]  --frames DIR [$WORK/data/frames]
#   --base-tar FILE [none]  --workers W [all cores]  --videos-per-class N [100] (the last two only
#   when synth and the cache must be built)
# A CPU dry run (after gpu_train_mini.sh's dry run in the same --work; or in a new --work with
# --base-tar /tmp/o/mini_base.tar.gz --videos-per-class 2 --workers 1):
#   OUT=/tmp/o2 bash benchmarks/gpu_train_avsyncd.sh --device cpu --steps 2 --batch-size 2 --sample-steps 1 \
#       --work /tmp/asva_dry [--test-runs] [--audio-encoder FILE]
set -euo pipefail
NAME=gpu_train_avsyncd.sh
. "$(dirname "$0")/gpu_common.sh"

MINUTES=3; I2VD_MINUTES=""; STEPS=""; BATCH=128; LR=5e-4; DEVICE=cuda; SEQUENTIAL=""; TEST_RUNS=""
SAMPLE_STEPS=""; BASE_TAR=""; WORKERS=""; VPC=""; ENCODER=""; WORK=/tmp/asva_gpu; OUTDIR="${OUT:-}"; PY=python3; BASE=""; FRAMES=""
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES=$2; shift 2;;
    --i2vd-minutes) I2VD_MINUTES=$2; shift 2;;
    --steps) STEPS=$2; shift 2;;
    --batch-size) BATCH=$2; shift 2;;
    --lr) LR=$2; shift 2;;
    --device) DEVICE=$2; shift 2;;
    --sequential) SEQUENTIAL=1; shift;;
    --test-runs) TEST_RUNS=1; shift;;
    --sample-steps) SAMPLE_STEPS=$2; shift 2;;
    --audio-encoder) ENCODER=$2; shift 2;;
    --work) WORK=$2; shift 2;;
    --out) OUTDIR=$2; shift 2;;
    --python) PY=$2; shift 2;;
    --base) BASE=$2; shift 2;;
    --frames) FRAMES=$2; shift 2;;
    --base-tar) BASE_TAR=$2; shift 2;;
    --workers) WORKERS=$2; shift 2;;
    --videos-per-class) VPC=$2; shift 2;;
    *) help_or_unknown_option "$1" '2,45';;
  esac
done
check_setup
I2VD_MINUTES=${I2VD_MINUTES:-$MINUTES}
[ -n "$ENCODER" ] && ENCODER=$(cd "$(dirname "$ENCODER")" && pwd)/$(basename "$ENCODER")
[ -n "$BASE_TAR" ] && BASE_TAR=$(cd "$(dirname "$BASE_TAR")" && pwd)/$(basename "$BASE_TAR")
BASE=${BASE:-$WORK/train/mini_base/mini_base}; FRAMES=${FRAMES:-$WORK/data/frames}
SYNTH="$WORK/data/synth"; RUNS="$WORK/train/avsyncd"; PACK="$WORK/pack_avsyncd"
exec > >(tee -a "$OUTDIR/gpu_train_avsyncd.log") 2>&1
export PYTHONUNBUFFERED=1
stamp() { echo "[$(date +%H:%M:%S) +$((SECONDS))s] $*"; }

# ---------------------------------------------------------------- 0 python and inputs
stamp "stage 0: python ($PY), inputs"
if [ ! -f "$SYNTH/synth.json" ] || [ ! -d "$FRAMES" ]; then
  stamp "no synth / clip cache in $WORK (a fresh machine): gpu_train_mini.sh --stages synth,cache"
  (cd "$REPO" && bash benchmarks/gpu_train_mini.sh --stages synth,cache --work "$WORK" --out "$OUTDIR" \
      --python "$PY" --device "$DEVICE" ${WORKERS:+--workers "$WORKERS"} ${VPC:+--videos-per-class "$VPC"})
fi
if [ ! -f "$BASE/mini_base.json" ] && [ -n "$BASE_TAR" ]; then
  stamp "unpacking the mini base from $BASE_TAR"
  mkdir -p "$WORK/train/mini_base" && tar -xzf "$BASE_TAR" -C "$WORK/train/mini_base"
fi
SITE="$WORK/site"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
cd "$WORK"   # import the installed asva_bench (it maps asva_bench.models), never the checkout
install_checkout "asva_bench.models.avsyncd.train, asva_bench.models.avsyncd.adapter"
[ -f "$BASE/mini_base.json" ] || { echo "gpu_train_avsyncd.sh: no mini base bundle at $BASE; run benchmarks/gpu_train_mini.sh first (same --work) or pass --base" >&2; exit 3; }
[ -f "$SYNTH/synth.json" ] || { echo "gpu_train_avsyncd.sh: no synth build at $SYNTH; run benchmarks/gpu_train_mini.sh first (same --work)" >&2; exit 3; }
"$PY" - "$DEVICE" "$ENCODER" <<'EOF'
import sys, torch
dev, enc = sys.argv[1], sys.argv[2]
if dev.startswith("cuda") and not torch.cuda.is_available():
    sys.exit("gpu_train_avsyncd.sh: --device cuda but torch sees no GPU")
from asva_bench.models.avsyncd.components import load_audio_encoder
try:
    e, ident = load_audio_encoder("mini", enc or None, "cpu")
except Exception as err:  # the message names the missing file
    sys.exit(f"gpu_train_avsyncd.sh: the mini audio encoder is not available ({type(err).__name__}: {err}); "
             "ship asva_bench/backbones/mini_weights first or pass --audio-encoder FILE (carry the file)")
print("audio encoder:", ident)
EOF
ENC_ARGS=(); [ -n "$ENCODER" ] && ENC_ARGS=(--audio-encoder "$ENCODER")
CPUS=$(nproc); THREADS=$(( CPUS > 2 ? CPUS / 2 : 1 ))

# ---------------------------------------------------------------- 1 training
train_one() {  # model minutes
  local model=$1 minutes=$2
  mkdir -p "$RUNS/$model"
  "$PY" -m asva_bench.models.avsyncd.train "$model" --profile mini --dataset synth --root "$SYNTH" \
      --cache-dir "$FRAMES" --base "$BASE" "${ENC_ARGS[@]}" --out "$RUNS/$model" --device "$DEVICE" \
      --minutes "$minutes" ${STEPS:+--steps "$STEPS"} --batch-size "$BATCH" --lr "$LR" --threads "$THREADS" \
      --checkpoint-minutes 1 --probe-every 250 --resume --json > "$RUNS/$model/summary.json" \
      2> >(grep -v '^\s*$' | sed "s/^/[$model] /" >&2)
}
stamp "stage 1: training AVSyncD-mini ($MINUTES min) and I2VD-mini ($I2VD_MINUTES min), batch $BATCH, lr $LR, on $DEVICE"
RC=0
if [ -n "$SEQUENTIAL" ]; then
  train_one avsyncd "$MINUTES" || RC=$?
  train_one i2vd "$I2VD_MINUTES" || RC=$?
else
  train_one avsyncd "$MINUTES" & P1=$!
  train_one i2vd "$I2VD_MINUTES" & P2=$!
  wait $P1 || RC=$?
  wait $P2 || RC=$?
fi
# a failed model still leaves its last checkpoint (every minute); pack whatever exists
[ $RC -eq 0 ] || echo "gpu_train_avsyncd.sh: a training process failed (rc $RC); see the log above" >&2
for m in avsyncd i2vd; do
  stamp "$m summary: $(cat "$RUNS/$m/summary.json" 2>/dev/null)"
  grep '"loss"' "$RUNS/$m/loss_log.jsonl" 2>/dev/null | tail -n 1 || true
done
BOTH=""; [ -f "$RUNS/avsyncd/checkpoint/avsyncd_trainable.safetensors" ] && \
  [ -f "$RUNS/i2vd/checkpoint/avsyncd_trainable.safetensors" ] && BOTH=1

# ---------------------------------------------------------------- 2 preview
stamp "stage 2: preview"
[ -n "$BOTH" ] && { "$PY" - "$SYNTH" "$RUNS" "$BASE" "$DEVICE" "$ENCODER" "$SAMPLE_STEPS" <<'EOF' || echo "preview failed (see above)"; }
import json, sys, time
import torch
from torchvision.utils import save_image
from asva_bench.adapters.api import ClipBatch, validate_output
from asva_bench.avio import decode_protocol_clips
from asva_bench.datasets import get_dataset
from asva_bench.protocol import MINI, waveforms_to_mel
from asva_bench.models.avsyncd.adapter import AVSyncD
from asva_bench.baselines.i2vd import I2VD
synth, runs, base, dev, enc, steps = sys.argv[1:7]
enc, steps = enc or None, int(steps) if steps else None
entries = sorted(get_dataset("synth").load(synth).split("test"), key=lambda e: e.rel_path)
picked, seen = [], set()
for e in entries:
    if e.class_name not in seen and len(picked) < 6:
        seen.add(e.class_name); picked.append(e)
clips, shifted = [], []
for e in picked:
    c0, c1 = decode_protocol_clips(e.path, MINI, starts=[0.0, 0.5])
    clips.append(c0); shifted.append(c1.audio)
def batch(audio):
    audio = torch.stack(audio)
    return ClipBatch(first_frame=torch.stack([c.frames[0] for c in clips]), audio=audio,
                     mel=waveforms_to_mel(audio, MINI), text=[e.text for e in picked],
                     clip_ids=[f"{e.class_name}/{e.stem}_clip-00" for e in picked],
                     seeds=list(range(len(picked))), protocol=MINI)
true_b, shift_b = batch([c.audio for c in clips]), batch(shifted)
t = time.perf_counter()
av = AVSyncD(eta=4.0, steps=steps, checkpoint=f"{runs}/avsyncd/checkpoint", base=base, audio_encoder=enc)
av.setup(MINI, dev)
out_true = validate_output(av, true_b, av.generate(true_b))
out_shift = validate_output(av, shift_b, av.generate(shift_b))
i2 = I2VD(steps=steps, checkpoint=f"{runs}/i2vd/checkpoint", base=base)
i2.setup(MINI, dev)
out_i2 = validate_output(i2, true_b, i2.generate(true_b))
gt = torch.stack([c.frames for c in clips])
rows = torch.stack([gt, out_true, out_shift, out_i2], dim=1)  # [clips, 4, 12, 3, H, W]
save_image(rows.flatten(0, 2), f"{runs}/preview.png", nrow=12, padding=1)
def motion(x):  # mean |frame_k - frame_1| over frames 2..12
    return round(float((x[:, 1:] - x[:, :1]).abs().mean()), 4)
print(json.dumps({"preview": f"{runs}/preview.png", "seconds": round(time.perf_counter() - t, 1),
                  "classes": [e.class_name for e in picked],
                  "mean_abs_change_vs_frame1": {"ground_truth": motion(gt), "avsyncd_eta4": motion(out_true),
                                                "avsyncd_eta4_shifted_audio": motion(out_shift),
                                                "i2vd": motion(out_i2)},
                  "avsyncd_true_vs_shifted_audio_mean_abs_diff": round(float((out_true - out_shift).abs().mean()), 4)}))
EOF
[ -n "$BOTH" ] || echo "preview skipped: a checkpoint is missing"

# ---------------------------------------------------------------- 3 test runs (optional)
if [ -n "$TEST_RUNS" ] && [ -n "$BOTH" ]; then
  stamp "stage 3: synth test runs with the new weights installed as the shipped ones"
  WDIR=$("$PY" -c "from asva_bench.models.avsyncd.components import WEIGHTS_DIR; print(WEIGHTS_DIR)")
  EXPLICIT=""
  case "$(cd "$WDIR/.." && pwd -P)/" in
    "$(cd "$REPO" && pwd -P)"/*) EXPLICIT=1   # an editable install: never overwrite the checkout's weights
       echo "the installed package is the checkout itself; the runs name checkpoint= and base= explicitly";;
    *) mkdir -p "$WDIR/avsyncd_mini" "$WDIR/i2vd_mini"
       for m in avsyncd i2vd; do
         cp "$RUNS/$m/checkpoint/"avsyncd_{config.json,trainable.safetensors,training.json} "$WDIR/${m}_mini/"
       done
       # the shipped base must be the one these weights were trained on
       rm -rf "$WDIR/mini_base"; cp -r "$BASE" "$WDIR/mini_base";;
  esac
  pids=()
  for spec in "avsyncd eta=1" "avsyncd eta=4" "avsyncd eta=8" "i2vd" "static"; do  # side by side
    set -- $spec; model=$1; arg=${2:-}
    name=$model${arg:+-${arg/=/}}
    margs=(); [ -n "$arg" ] && margs+=(--model-arg "$arg")
    if [ "$model" != static ]; then
      [ -n "$SAMPLE_STEPS" ] && margs+=(--model-arg "steps=$SAMPLE_STEPS")
      [ -n "$ENCODER" ] && [ "$model" = avsyncd ] && margs+=(--model-arg "audio_encoder=$ENCODER")
      [ -n "$EXPLICIT" ] && margs+=(--model-arg "checkpoint=$RUNS/$model/checkpoint" --model-arg "base=$BASE")
    fi
    OMP_NUM_THREADS=$(( CPUS > 5 ? CPUS / 5 : 1 )) "$PY" -m asva_bench.cli run --model "$model" --dataset synth \
        --root "$SYNTH" --profile mini --device "$DEVICE" "${margs[@]}" --out "$RUNS/runs/$name" \
        --json > "$RUNS/runs_$name.json" 2> >(grep -v '^\s*$' | sed "s/^/[$name] /" >&2) &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do wait "${pids[$i]}" || echo "a test run failed (rc $?); see the log above"; done
  for f in "$RUNS"/runs_*.json; do stamp "$(basename "$f" .json): $(head -c 300 "$f")"; done
fi

# ---------------------------------------------------------------- 4 pack
stamp "stage 4: packing into $OUTDIR"
rm -rf "$PACK"; mkdir -p "$PACK/weights" "$PACK/train"
for m in avsyncd i2vd; do
  mkdir -p "$PACK/weights/${m}_mini" "$PACK/train/$m"
  cp "$RUNS/$m/checkpoint/"avsyncd_{config.json,trainable.safetensors,training.json} "$PACK/weights/${m}_mini/" \
    2>/dev/null || echo "no checkpoint of $m to pack"
  cp "$RUNS/$m/"{loss_log.jsonl,train_config.json,summary.json} "$PACK/train/$m/" 2>/dev/null || true
done
cp "$RUNS/preview.png" "$PACK/" 2>/dev/null || true
if [ -d "$RUNS/runs" ]; then
  for d in "$RUNS"/runs/*/; do
    n=$(basename "$d"); mkdir -p "$PACK/runs/$n"
    cp "$d"run.json "$d"results.json "$d"scores.jsonl "$PACK/runs/$n/" 2>/dev/null || true
  done
fi
tar -czf "$OUTDIR/avsyncd_mini.tar.gz" -C "$PACK" .
ls -la "$OUTDIR"
stamp "done"
exit $RC
