#!/usr/bin/env bash
# The textclf study: each model trained on the same split beside the TF-IDF + LR baseline, one run after another
# (2 shared CPU cores). Logs and work folders go to runs/textclf/ (ignored by git). Usage, from the repository root:
#   nohup experiments/textclf/run_all.sh [SEEDS...] > runs/textclf/run_all.log 2>&1 &
# Seed 0 runs fit the baseline in the same command; later seeds skip it (it does not depend on the training seed).
# A run whose results.json exists is skipped, so the script can be restarted.
set -u
cd "$(dirname "$0")/../.."
DATA=${MEDJAX_DATA_DIR:-../shared/data}/medical-abstracts-tc
SEEDS=${*:-0}
mkdir -p runs/textclf
train() {  # name seed flags...
  local name=$1 seed=$2; shift 2
  local baseline=--baseline; [ "$seed" = 0 ] || baseline=--no-baseline
  [ -f "runs/textclf/${name}_s${seed}/results.json" ] && return 0
  /usr/bin/time -v .venv/bin/python -m medjax.cli train textclf --workdir "runs/textclf/${name}_s${seed}" \
    --data-dir "$DATA" --seed "$seed" $baseline --no-progress --log-every 1000 "$@" \
    > "runs/textclf/${name}_s${seed}.log" 2>&1
}
# The attention models first for every seed: an LSTM run took 32 min on the shared CPU. The single attention layer
# peaks within a few epochs (the transformer's validation macro-F1 did by epoch 5 of 20), hence its 10 epochs.
for seed in $SEEDS; do
  train transformer "$seed" --model transformer --num-layers 1 --dropout 0.3
  train attention "$seed" --model attention --dropout 0.3 --epochs 10
done
for seed in $SEEDS; do
  train lstm "$seed" --model lstm
done
