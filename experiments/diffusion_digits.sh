#!/usr/bin/env bash
# The diffusion rows of the README's results table: every diffusion model on the 8x8 digits,
# its full report (FD/KID, bits/dim: variational bound and PF-ODE) and FD against sampler steps.
#
#     bash experiments/diffusion_digits.sh [RUNS_DIR]       (about 1.5 h on 2 CPU cores)
set -euo pipefail
RUNS=${1:-runs}
train() { local name=$1; shift; /usr/bin/time -f "$name train wall %e s" gmzoo train "$@" --workdir "$RUNS/$name" --set train.progress_bar=false; }

train ddpm ddpm
gmzoo evaluate --workdir "$RUNS/ddpm"
gmzoo evaluate --workdir "$RUNS/ddpm" --sweep ddpm ddim:10 ddim:20 ddim:50 ddim:100 "ddim:100,eta=1" pc:1000 em:1000 ode:100

train ddpm_cond ddpm_cond
gmzoo evaluate --workdir "$RUNS/ddpm_cond"
gmzoo evaluate --workdir "$RUNS/ddpm_cond" --sweep ddim:50 "ddim:50,guidance=1" "ddim:50,guidance=3" \
    "ddim:50,guidance=1,guide=classifier" "ddim:50,guidance=3,guide=classifier"

for sde in vp subvp ve; do
  train score_$sde score_$sde
  gmzoo evaluate --workdir "$RUNS/score_$sde"
  gmzoo evaluate --workdir "$RUNS/score_$sde" --sweep pc:100 pc:500 em:100 em:500 em:1000 rd:500 ode:50 "ode:100,ode_method=heun"
done

train cascaded cascaded
gmzoo evaluate --workdir "$RUNS/cascaded"
gmzoo evaluate --workdir "$RUNS/cascaded" --sweep ddpm ddim:20 ddim:100

train ae_digits ae --set data.name=digits --set data.scale=symmetric --set model.latent_dim=16 --set model.hidden="(256,128)"
train latent_ddpm latent_ddpm --set data.name=digits --set data.scale=symmetric --set model.autoencoder="$RUNS/ae_digits"
gmzoo evaluate --workdir "$RUNS/latent_ddpm"
gmzoo evaluate --workdir "$RUNS/latent_ddpm" --sweep ddpm ddim:20 ddim:100
