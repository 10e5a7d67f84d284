#!/usr/bin/env bash
# The VQ-VAE results of the README: stage 1 (vqvae, vqvae2) and the prior over their codes on
# each data set given, then `gmzoo evaluate` of every run.
#   bash experiments/vqvae.sh RUNS [mnist5k] [digits]
# Defaults everywhere (binarized data, K = 512 codes of 64 dims, EMA codebook with dead-code
# restarts, a gated PixelCNN prior), except on the 1,437 digits: K = 64 codes (the 8x8 images
# give 4 code vectors each at downsample 4) and half the steps.
set -euo pipefail
runs=${1:?usage: experiments/vqvae.sh RUNS [mnist5k] [digits]}; shift
sets=${*:-mnist5k digits}
mkdir -p "$runs"
for data in $sets; do
  extra=(); prior_extra=()
  if [ "$data" = digits ]; then
    extra=(--set data.name=digits --set model.num_codes=64 --set train.steps=1500)
    prior_extra=(--set data.name=digits --set train.steps=1000 --set model.first_kernel=3)
  fi
  for model in vqvae vqvae2; do
    wd="$runs/${model}_$data"
    [ -d "$wd/checkpoints" ] || gmzoo train "$model" --workdir "$wd" "${extra[@]}" --set train.progress_bar=false
    gmzoo evaluate --workdir "$wd" > "$wd/evaluate.txt"
    pw="$runs/${model}_prior_$data"
    [ -d "$pw/checkpoints" ] || gmzoo train vqvae_prior --workdir "$pw" --set model.autoencoder="$wd" "${prior_extra[@]}" --set train.progress_bar=false
    gmzoo evaluate --workdir "$pw" > "$pw/evaluate.txt"
  done
done
