#!/usr/bin/env bash
# The normalizing-flow results of the README: realnvp and glow on dequantized digits and
# mnist5k, cond_flow (x4 super-resolution) on mnist5k; `gmzoo evaluate` of each, and sample
# grids at two temperatures.
#   bash experiments/flows.sh RUNS [digits] [mnist5k]
# digits: the rows' defaults, 2,000 steps of batch 64; and glow at half width (hidden 64, 4 steps
# per level), 1,000 steps: the default Glow (0.6M parameters) overfits the 1,437 digits.
# mnist5k (the CPU budget of one session): realnvp at its default size, 1,000 steps of batch
# 64; glow and cond_flow at half width (hidden 64) and 4 steps per level instead of 8, 600 steps.
set -euo pipefail
runs=${1:?usage: experiments/flows.sh RUNS [digits] [mnist5k]}; shift
sets=${*:-digits mnist5k}
mkdir -p "$runs"
train() {  # workdir, model, settings...
  local wd=$1; shift
  [ -d "$wd/checkpoints" ] || gmzoo train "$@" --workdir "$wd" --set train.progress_bar=false
  gmzoo evaluate --workdir "$wd" > "$wd/evaluate.txt"
}
grids() {  # workdir
  for t in 0.7 1.0; do
    gmzoo sample --workdir "$1" --n 64 --set sample.temperature=$t --overwrite \
      --out "$1/samples/grid_T$t.png"
  done
}
for data in $sets; do
  if [ "$data" = digits ]; then
    common=(--set data.name=digits --set train.steps=2000 --set train.eval_every=1000)
    for model in realnvp glow; do
      train "$runs/${model}_digits" "$model" "${common[@]}"; grids "$runs/${model}_digits"
    done
    train "$runs/glow_half_digits" glow --set data.name=digits --set train.steps=1000 \
      --set train.eval_every=500 --set model.hidden=64 --set model.steps_per_level=4
    grids "$runs/glow_half_digits"
  else
    common=(--set train.steps=1000 --set train.eval_every=500 --set train.sample_every=500 \
            --set train.checkpoint_every=500)
    train "$runs/realnvp_mnist5k" realnvp "${common[@]}"; grids "$runs/realnvp_mnist5k"
    common=(--set train.steps=600 --set train.eval_every=300 --set train.sample_every=300 \
            --set train.checkpoint_every=300)
    half=(--set model.hidden=64 --set model.steps_per_level=4)
    train "$runs/glow_mnist5k" glow "${common[@]}" "${half[@]}"; grids "$runs/glow_mnist5k"
    train "$runs/cond_flow_mnist5k" cond_flow "${common[@]}" "${half[@]}"
    gmzoo evaluate --workdir "$runs/cond_flow_mnist5k" --set sample.temperature=0 \
      > "$runs/cond_flow_mnist5k/evaluate_T0.txt"
  fi
done
