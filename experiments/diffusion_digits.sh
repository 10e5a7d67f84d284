#!/usr/bin/env bash
# The diffusion rows of the README's results table: each diffusion model on the 8x8 digits, its
# full report (FD/KID; bits/dim from the variational bound and the PF-ODE) and FD against sampler
# steps (gmzoo evaluate --sweep).
#
#     bash experiments/diffusion_digits.sh RUNS_DIR [MODEL ...]      (default: all of them)
#     STEPS=3000 bash experiments/diffusion_digits.sh runs score_vp  (shorter training)
set -euo pipefail
RUNS=${1:-runs}; shift || true
MODELS=${*:-ddpm ddpm_cond score_vp score_subvp score_ve cascaded latent_ddpm}
STEPS=${STEPS:-6000}
train() { local dir=$1; shift; /usr/bin/time -f "$dir train wall %e s" gmzoo train "$@" \
          --workdir "$RUNS/$dir" --set train.progress_bar=false --set train.steps="$STEPS"; }

for model in $MODELS; do
  case $model in
    ddpm)
      train ddpm ddpm
      gmzoo evaluate --workdir "$RUNS/ddpm"
      gmzoo evaluate --workdir "$RUNS/ddpm" --sweep ddpm ddim:10 ddim:20 ddim:50 ddim:100 \
          "ddim:100,eta=1" pc:1000 em:1000 ode:100 ;;
    ddpm_cond)
      train ddpm_cond ddpm_cond
      gmzoo evaluate --workdir "$RUNS/ddpm_cond"
      gmzoo evaluate --workdir "$RUNS/ddpm_cond" --sweep ddim:50 "ddim:50,guidance=1" \
          "ddim:50,guidance=3" "ddim:50,guidance=1,guide=classifier" "ddim:50,guidance=3,guide=classifier" ;;
    score_vp|score_subvp|score_ve)
      train "$model" "$model"
      gmzoo evaluate --workdir "$RUNS/$model"
      gmzoo evaluate --workdir "$RUNS/$model" --sweep pc:100 pc:500 em:100 em:500 ode:50 ;;
    cascaded)
      train cascaded cascaded
      gmzoo evaluate --workdir "$RUNS/cascaded"
      gmzoo evaluate --workdir "$RUNS/cascaded" --sweep ddim:20 ddim:100 ;;
    latent_ddpm)
      train ae_digits ae --set data.name=digits --set data.scale=symmetric \
          --set model.latent_dim=16 --set model.hidden="(256,128)"
      train latent_ddpm latent_ddpm --set data.name=digits --set data.scale=symmetric \
          --set model.autoencoder="$RUNS/ae_digits"
      gmzoo evaluate --workdir "$RUNS/latent_ddpm"
      gmzoo evaluate --workdir "$RUNS/latent_ddpm" --sweep ddpm ddim:20 ddim:100 ;;
    *) echo "unknown model $model" >&2; exit 2 ;;
  esac
done
