#!/usr/bin/env bash
# DDPM on the 28x28 mnist5k digits with a small U-Net (28 -> 14 -> 7, attention at 7x7), sized
# for a 2-core CPU: a short run, evaluated on 200 test images (stratified 50-term bound, 50-step
# PF-ODE) and 500 samples.
#
#     bash experiments/diffusion_mnist5k.sh [RUNS_DIR]
set -euo pipefail
RUNS=${1:-runs}
/usr/bin/time -f "ddpm_mnist5k train wall %e s" gmzoo train ddpm --workdir "$RUNS/ddpm_mnist5k" \
    --set data.name=mnist5k --set model.channel_mults="(1,2,2)" --set model.attention_resolutions="(7,)" \
    --set train.steps=2500 --set train.batch_size=64 --set train.sample_every=500 \
    --set train.checkpoint_every=500 --set train.progress_bar=false \
    --set eval.max_examples=200 --set eval.vlb_timesteps=50 --set eval.ode_steps=50 \
    --set eval.num_samples=500 --set eval.batch_size=100 --set sample.steps=50
gmzoo evaluate --workdir "$RUNS/ddpm_mnist5k"
gmzoo evaluate --workdir "$RUNS/ddpm_mnist5k" --sweep ddim:20 ddim:50 ddim:100
