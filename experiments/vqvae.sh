#!/usr/bin/env bash
# The VQ-VAE results of the README: stage 1 (vqvae, vqvae2) and the prior over their codes, and
# the conv VAE of the same width beside them, on each data set given; `gmzoo evaluate` of each.
#   bash experiments/vqvae.sh RUNS [mnist5k] [digits]
# Defaults (binarized data; K = 512 codes of 64 dims; EMA codebook with dead-code restarts at
# an EMA count of 1; encoder and decoder of 64 channels; a gated PixelCNN prior of 8 layers)
# except where the CPU budget of one session cut them:
#   mnist5k: vqvae 3,000 steps (its default), vqvae2 1,000, the vqvae prior 1,000 (default
#            2,000), the vqvae2 priors 600 (checkpoints every 200);
#   digits:  K = 64 codes (the 8x8 images give 4 code vectors each at downsample 4), 1,500
#            steps for stage 1, 1,000 for the priors, 3x3 first kernels.
# conv_vae: hidden 64,64 (the VQ-VAE's two stride-2 stages of 64 channels), its other defaults
# (latent 32), as many steps as vqvae; IWAE bound with k = 100 (eval.iwae_k; default 1,000).
set -euo pipefail
runs=${1:?usage: experiments/vqvae.sh RUNS [mnist5k] [digits]}; shift
sets=${*:-mnist5k digits}
mkdir -p "$runs"
train() {  # workdir, model, settings...: train (or finish an interrupted run), then evaluate
  local wd=$1; shift
  if [ -d "$wd/checkpoints" ]; then
    gmzoo train "$@" --workdir "$wd" --resume --set train.progress_bar=false
  else
    gmzoo train "$@" --workdir "$wd" --set train.progress_bar=false
  fi
  gmzoo evaluate --workdir "$wd" > "$wd/evaluate.txt"
}
for data in $sets; do
  if [ "$data" = digits ]; then
    d=(--set data.name=digits); s1=(--set model.num_codes=64 --set train.steps=1500)
    vq2=("${s1[@]}"); pr=(--set train.steps=1000 --set model.first_kernel=3); pr2=("${pr[@]}")
    vae=1500
  else
    d=(); s1=(); vq2=(--set train.steps=1000); pr=(--set train.steps=1000); vae=3000
    pr2=(--set train.steps=600 --set train.checkpoint_every=200 --set train.eval_every=600
         --set train.sample_every=600)
  fi
  train "$runs/vqvae_$data" vqvae "${d[@]}" "${s1[@]}"
  train "$runs/vqvae_prior_$data" vqvae_prior --set model.autoencoder="$runs/vqvae_$data" "${d[@]}" "${pr[@]}"
  train "$runs/vqvae2_$data" vqvae2 "${d[@]}" "${vq2[@]}"
  train "$runs/vqvae2_prior_$data" vqvae_prior --set model.autoencoder="$runs/vqvae2_$data" "${d[@]}" "${pr2[@]}"
  train "$runs/conv_vae_$data" conv_vae "${d[@]}" --set model.hidden=64,64 --set train.steps=$vae \
    --set eval.iwae_k=100
done
