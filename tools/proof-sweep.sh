#!/usr/bin/env bash
# Recipe sweep for the training proof (docs/training.md), run on a lent GPU machine: the default
# synthetic set, clipmg-tiny, the proof's 78-epoch schedule, one run per recipe in parallel (float32,
# one CPU thread and one loader process each). The GPU only makes the search fast; the proof itself
# is the 15-minute run on the 2-core CPU. Needs the wheels of tools/device-check.sh in .whl/.
set -u
OUT=${OUT:-/tmp/sweep-out}; mkdir -p "$OUT/r"
exec > >(tee "$OUT/log") 2>&1
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
PY=${PY:-python3}
if [ -d .whl ] && [ -z "${NO_WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  mkdir -p /tmp/pkg/clipmg && for d in model train engines stream; do ln -sfn "$PWD/$d" /tmp/pkg/clipmg/$d; done
  export PYTHONPATH=/tmp/pkg:/tmp/site
fi
DEV=${DEV:-cuda}; LIMIT=${LIMIT:-4.5}; EPOCHS=${EPOCHS:-78}
t0=$SECONDS
$PY -m clipmg.train.synth /tmp/synth-default --seed 0 --quiet || exit 1
echo "synthetic set written in $((SECONDS - t0)) s"
BASE="--data /tmp/synth-default --preset clipmg-tiny --epochs $EPOCHS --batch-size 16 --lr-new 2e-3 --lr-vit 1e-3 --seed 0 --workers 1 --threads 1 --amp off --device $DEV --time-limit-min $LIMIT"
declare -A RECIPES=(
  [base]="--colour-jitter 0.3"
  [person]="--colour-jitter 0.3 --crop person"
  [smooth]="--colour-jitter 0.3 --label-smoothing 0.1"
  [wd02]="--colour-jitter 0.3 --weight-decay 0.2"
  [person-smooth]="--colour-jitter 0.3 --crop person --label-smoothing 0.1"
  [cj05]="--colour-jitter 0.5"
  [lr3]="--colour-jitter 0.3 --lr-new 3e-3 --lr-vit 1.5e-3"
  [person-wd02]="--colour-jitter 0.3 --crop person --weight-decay 0.2"
)
PIDS=()
for name in "${!RECIPES[@]}"; do
  $PY -m clipmg.train.trainer $BASE ${RECIPES[$name]} --out /tmp/sweep/$name > "$OUT/r/$name.log" 2>&1 &
  PIDS+=($!)
done
wait "${PIDS[@]}"  # not a bare `wait`: that would also wait for the tee above, which never ends
echo "all done after $((SECONDS - t0)) s"
for name in "${!RECIPES[@]}"; do
  echo "--- $name: ${RECIPES[$name]}"
  grep -a "epoch [0-9]*: loss" "$OUT/r/$name.log" | sed 's/.*clipmg.train: //' | awk 'NR % 6 == 0'
  grep -a "^done\|Error\|error" "$OUT/r/$name.log" | tail -3
  cp /tmp/sweep/$name/log.csv "$OUT/r/$name-steps.csv" 2>/dev/null
done
tar czf "$OUT/results.tar.gz" -C "$OUT" r && rm -rf "$OUT/r"
