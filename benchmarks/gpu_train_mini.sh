#!/usr/bin/env bash
# Train the mini world's models on a lent GPU machine, in one prepared run.
#
#   OUT=/where/results/go bash benchmarks/gpu_train_mini.sh --minutes 5
#
# Run from the repository root.  Stages (each skipped when its result exists):
#   0  python: wheels carried in ./.whl (diffusers, importlib_metadata, av) are
#      installed into $WORK/site; asva-bench is built from a copy of this
#      checkout into the same folder (no dependencies pulled, torch untouched)
#   1  synth dataset            $WORK/data/synth      (--workers processes)
#   2  clip cache (train, mini protocol 64x64; packed on 12 fps when training)  $WORK/data/frames
#   3  mini base training for --minutes (bf16 autocast on CUDA) -> bundle
#   -- HOOK: later stages (AVSyncD-mini, I2VD-mini ...) go before "pack" and
#      add their files to PACK_FILES / $OUT
#   4  pack: what comes back through the device tool's limits (<= 8 files,
#      < 16 MiB each, <= 2 folders deep) into $OUT:
#        mini_base.tar.gz     the bundle (models/avsyncd/weights/mini_base layout)
#                             + loss_log.jsonl + trainer.json + samples.png
#        train_base.json      the training summary (one JSON object)
#        samples_base.png     sample grid, one row per class
#        env.json             python / torch / GPU facts
#        gpu_train_mini.log   everything this script printed
#      The resumable optimizer state (~50 MB) stays on the machine.
#
# Options (defaults in brackets):
#   --minutes M [5]  --steps N [none: time only]  --batch-size B [256]  --lr LR [1e-3]
#   --warmup W [500]  --device D [cuda]  --workers W [all cores]  --videos-per-class N [100]
#   --work DIR [/tmp/asva_gpu]  --out DIR [$OUT]  --python PY [python3]  --wheels DIR [.whl]
#   --no-bf16  --threads N [torch's default; for CPU dry runs]  --stages LIST [synth,cache,base]
# A CPU dry run:  OUT=/tmp/o bash benchmarks/gpu_train_mini.sh --device cpu --minutes 1 \
#                   --videos-per-class 2 --batch-size 8 --threads 1 --work /tmp/asva_dry
set -euo pipefail
NAME=gpu_train_mini.sh
. "$(dirname "$0")/gpu_common.sh"

MINUTES=5; STEPS=""; BATCH=256; LR=1e-3; WARMUP=500; DEVICE=cuda; WORKERS=""; VPC=100
WORK=/tmp/asva_gpu; OUTDIR="${OUT:-}"; PY=python3; WHEELS=.whl; BF16=""; STAGES="synth,cache,base"; THREADS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES=$2; shift 2;;
    --steps) STEPS=$2; shift 2;;
    --batch-size) BATCH=$2; shift 2;;
    --lr) LR=$2; shift 2;;
    --warmup) WARMUP=$2; shift 2;;
    --device) DEVICE=$2; shift 2;;
    --workers) WORKERS=$2; shift 2;;
    --videos-per-class) VPC=$2; shift 2;;
    --work) WORK=$2; shift 2;;
    --out) OUTDIR=$2; shift 2;;
    --python) PY=$2; shift 2;;
    --wheels) WHEELS=$2; shift 2;;
    --no-bf16) BF16="--no-bf16"; shift;;
    --threads) THREADS=$2; shift 2;;
    --stages) STAGES=$2; shift 2;;
    *) help_or_unknown_option "$1" '2,36';;
  esac
done
check_setup
WORKERS=${WORKERS:-$(nproc)}
mkdir -p "$WORK/data"
exec > >(tee -a "$OUTDIR/gpu_train_mini.log") 2>&1
export PYTHONUNBUFFERED=1
has_stage() { case ",$STAGES," in *",$1,"*) return 0;; *) return 1;; esac; }
stamp() { echo "[$(date +%H:%M:%S) +$((SECONDS))s] $*"; }

# ---------------------------------------------------------------- 0 python
stamp "stage 0: python environment ($PY)"
SITE="$WORK/site"
mkdir -p "$SITE"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
cd "$WORK"   # never import the checkout's asva_bench by accident: the installed one maps asva_bench.models
missing=$("$PY" - <<'EOF'
import importlib.util
need = {"diffusers": "diffusers", "av": "av", "importlib_metadata": "importlib_metadata", "safetensors": "safetensors",
        "tqdm": "tqdm", "scipy": "scipy", "torchaudio": "torchaudio", "torchvision": "torchvision"}
print(" ".join(p for m, p in need.items() if importlib.util.find_spec(m) is None))
EOF
)
if [ -n "$missing" ]; then
  if ls "$REPO/$WHEELS"/*.whl >/dev/null 2>&1; then
    stamp "installing carried wheels for: $missing"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$REPO/$WHEELS"/*.whl
  else
    echo "gpu_train_mini.sh: python lacks $missing and no wheels in $REPO/$WHEELS; carry them (see the report)" >&2
    exit 3
  fi
fi
install_checkout "asva_bench.models.avsyncd.train_base"
"$PY" - "$OUTDIR/env.json" "$DEVICE" <<'EOF'
import json, platform, sys, torch, diffusers, asva_bench.models.avsyncd.train_base as tb
dev = sys.argv[2]
if dev.startswith("cuda") and not torch.cuda.is_available():
    sys.exit("gpu_train_mini.sh: --device cuda but torch sees no GPU")
env = {"python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers.__version__,
       "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
       "asva_bench": tb.__file__}
json.dump(env, open(sys.argv[1], "w"), indent=1)
print(env)
EOF

# ---------------------------------------------------------------- 1 synth
SYNTH="$WORK/data/synth"
if has_stage synth; then
  if [ -f "$SYNTH/synth.json" ]; then
    stamp "stage 1: synth present in $SYNTH"
  else
    stamp "stage 1: building synth ($VPC videos per class, $WORKERS workers)"
    "$PY" -m asva_bench.cli datasets make synth --root "$SYNTH" --videos-per-class "$VPC" --workers "$WORKERS" --no-progress --json
  fi
fi

# ---------------------------------------------------------------- 2 clip cache
FRAMES="$WORK/data/frames"
if has_stage cache; then
  stamp "stage 2: clip cache in $FRAMES"
  "$PY" -m asva_bench.training.clip_cache --root "$SYNTH" --cache-dir "$FRAMES" --workers "$WORKERS" --pack-fps 12 \
      --no-progress --json
fi

# ---------------------------------------------------------------- 3 mini base
BASE_RUN="$WORK/train/mini_base"
if has_stage base; then
  stamp "stage 3: mini base training, $MINUTES min, batch $BATCH, lr $LR on $DEVICE"
  "$PY" -m asva_bench.models.avsyncd.train_base --root "$SYNTH" --cache-dir "$FRAMES" --out "$BASE_RUN" \
      --device "$DEVICE" --minutes "$MINUTES" ${STEPS:+--steps "$STEPS"} --batch-size "$BATCH" --lr "$LR" \
      --warmup-steps "$WARMUP" --checkpoint-every 2000 --log-every 100 --samples-per-class 8 --sample-steps 50 \
      --workers "$WORKERS" $BF16 ${THREADS:+--threads "$THREADS"} --no-progress --json > "$OUTDIR/train_base.json"
  cat "$OUTDIR/train_base.json"; echo
  tail -n 3 "$BASE_RUN/loss_log.jsonl"
fi

# ---------------------------------------------------------------- HOOK: later stages
# e.g. AVSyncD-mini:  "$PY" -m asva_bench.models.avsyncd.train_avsyncd --base "$BASE_RUN/mini_base" \
#          --cache-dir "$FRAMES" --root "$SYNTH" --device "$DEVICE" ... ; then pack its bundle below.

# ---------------------------------------------------------------- 4 pack
stamp "stage 4: packing into $OUTDIR"
if [ -d "$BASE_RUN/mini_base" ]; then
  cp "$BASE_RUN/samples.png" "$OUTDIR/samples_base.png" 2>/dev/null || true
  tar -czf "$OUTDIR/mini_base.tar.gz" -C "$BASE_RUN" mini_base loss_log.jsonl checkpoint/trainer.json \
      $( [ -f "$BASE_RUN/samples.png" ] && echo samples.png )
fi
ls -la "$OUTDIR"
stamp "done"
