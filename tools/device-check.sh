#!/usr/bin/env bash
# The GPU checks of this project in one script, for a lent NVIDIA machine (see docs/engines.md,
# "On a GPU"). It runs from the repository root with wheels of what the machine lacks in .whl/
# (open_clip_torch, ftfy, wcwidth, av, openpyxl, et_xmlfile, pyzmq, msgspec; tomli where Python is 3.10)
# and writes everything to $OUT/results.tar.gz plus $OUT/log. Each step has its own time limit so one hang cannot eat the rest.
set -u
OUT=${OUT:-/tmp/device-out}; mkdir -p "$OUT"; R=$OUT/r; mkdir -p "$R"
exec > >(tee "$OUT/log") 2>&1
export PYTHONUNBUFFERED=1
step() { local name=$1 limit=$2; shift 2; echo "=== $name ($(date +%T))"; local t0=$SECONDS
  timeout "$limit" "$@"; echo "=== $name rc=$? in $((SECONDS - t0)) s"; }
PY=python3
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
# clipmg itself without installing it: the import root `clipmg` over the five product folders
mkdir -p /tmp/pkg/clipmg && for d in model train engines stream bench; do ln -sfn "$PWD/$d" /tmp/pkg/clipmg/$d; done
export PYTHONPATH=/tmp/pkg:/tmp/site
step env 60 bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc;
  python3 -c "import torch, onnxruntime, open_clip, av; print(\"torch\", torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0)); print(\"ort\", onnxruntime.__version__, onnxruntime.get_available_providers()); print(\"open_clip\", open_clip.__version__)";
  python3 -c "import tensorrt" 2>&1 | tail -1; python3 -c "import torch_tensorrt" 2>&1 | tail -1; ldconfig -p | grep -c nvinfer'
# the synthetic set is written in the background while the GPU measures synthetic tensors
( $PY -m clipmg.train.synth /tmp/synth --videos 16 --clips-per-video 16 --quiet > "$R/synth.log" 2>&1 ) &
SYNTH=$!
# (ViT-B/16's float32 step, measured on 2026-11-26, is left out to leave time for the cuda engine's steps)
for spec in "clipmg-vitb16 32 bf16" "clipmg-vitb16 32 fp16" "clipmg-vitb32 32 bf16" "clipmg-tiny 32 bf16"; do
  set -- $spec
  step "measure $spec" 120 $PY -m clipmg.train.measure --preset $1 --batch-size $2 --amp $3 --device cuda --steps 5 | tee -a "$R/measure.jsonl"
done
# the cuda engine (autocast + CUDA graphs, no TensorRT): its parity and speed against eager float32, then its tests
step cuda-bench 240 $PY -m clipmg.bench.cuda --presets clipmg-vitb32 clipmg-vitb16 --json "$R/cuda.json" --markdown "$R/cuda.md"
step pytest-cuda 240 $PY -m pytest -q -rs -p no:cacheprovider tests/test_engines_cuda.py
step bench 240 $PY -m clipmg.bench.engines --presets clipmg-vitb32 clipmg-vitb16 --backends torch tensorrt cuda \
  --torch-device cuda --batches 1 8 --json "$R/bench.json" --markdown "$R/bench.md"
step bench-cache 120 $PY -m clipmg.bench.cache --preset clipmg-vitb32 --device cuda --windows 20 --json | tee "$R/cache.json"
wait $SYNTH; cat "$R/synth.log"
# (ViT-B/16's two-epoch training run, measured on 2026-11-26, is left out for the many-stream step)
step train-tiny-fp16 180 $PY -m clipmg.train.trainer --data /tmp/synth --preset clipmg-tiny --out /tmp/runs/tiny --epochs 4 \
  --batch-size 16 --lr-new 2e-3 --lr-vit 1e-3 --workers 12 --amp fp16 --device cuda --seed 0
step eval-cuda 120 $PY -m clipmg.train.evaluate /tmp/runs/tiny/best.safetensors --data /tmp/synth --device cuda --out "$R/eval-tiny"
step torchrun-nccl 180 torchrun --standalone --nproc_per_node 1 -m clipmg.train.trainer --data /tmp/synth \
  --preset clipmg-tiny --out /tmp/runs/ddp --epochs 1 --batch-size 16 --workers 4 --amp bf16 --device cuda --max-steps 10
# --device cuda runs the cuda engine in the live worker (cuda:eager would keep eager PyTorch)
step live-cuda 90 $PY run_live.py --engine stream/assets/demo-tiny-synth.safetensors --device cuda --duration 20 --no-record --listen
# many cameras, one worker, the cuda engine: the streams one GPU sustains (30 fps, Δp 4, S 8, p99 <= 250 ms), pose on
# the CPU cores (MediaPipe where its wheel was carried, else the synthetic cameras' own keypoints)
POSE=synthetic; $PY -c "import mediapipe" 2>/dev/null && POSE=mediapipe
step streams-gpu 240 $PY -m clipmg.bench.streams --presets clipmg-vitb16 --modes batched --device cuda --pose $POSE \
  --streams 8 16 32 --seconds 15 --warmup 5 --json "$R/streams.json" --markdown "$R/streams.md"
step pytest-gpu 120 $PY -m pytest -q -rs -p no:cacheprovider tests/test_engines_gpu.py
for d in tiny ddp; do cp /tmp/runs/$d/log.csv "$R/train-$d-log.csv" 2>/dev/null; cp /tmp/runs/$d/metrics.json "$R/train-$d-metrics.json" 2>/dev/null; done
tar czf "$OUT/results.tar.gz" -C "$OUT" r && rm -rf "$R"
