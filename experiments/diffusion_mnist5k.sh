#!/usr/bin/env bash
# The mnist5k rows of the README's diffusion table: each diffusion model on the 28x28 mnist5k
# digits with a small U-Net (28 -> 14 -> 7, attention at 7x7), sized for a 2-core CPU. Short runs:
# ddpm 2500 steps at batch 64, the others STEPS (default 1000) at batch 32; evaluated on
# EVAL_EXAMPLES test images (stratified 50-term bound, PF-ODE of ODE_STEPS RK4 steps on the
# log-SNR grid) and as many samples (at most 500), drawn with 50 sampler steps.
#
#     bash experiments/diffusion_mnist5k.sh RUNS_DIR [MODEL ...]      (default: all of them)
set -euo pipefail
RUNS=${1:-runs}; shift || true
MODELS=${*:-ddpm ddpm_cond score_vp score_subvp score_ve cascaded latent_ddpm}
STEPS=${STEPS:-1000}
UNET=(--set model.channel_mults="(1,2,2)" --set model.attention_resolutions="(7,)" --set sample.steps=50)
COMMON=(--set data.name=mnist5k --set train.progress_bar=false
        --set eval.max_examples="${EVAL_EXAMPLES:-100}" --set eval.vlb_timesteps=50
        --set eval.ode_steps="${ODE_STEPS:-25}" --set eval.num_samples=500 --set eval.batch_size=100)
train() { local dir=$1; shift; /usr/bin/time -f "$dir train wall %e s" gmzoo train "$@" \
          --workdir "$RUNS/$dir" "${COMMON[@]}"; }
short=(--set train.steps="$STEPS" --set train.batch_size=32 --set train.sample_every=0
       --set train.checkpoint_every="$STEPS")

for model in $MODELS; do
  case $model in
    ddpm)
      train ddpm_mnist5k ddpm "${UNET[@]}" --set train.steps=2500 --set train.batch_size=64 \
          --set train.sample_every=500 --set train.checkpoint_every=500
      gmzoo evaluate --workdir "$RUNS/ddpm_mnist5k"
      gmzoo evaluate --workdir "$RUNS/ddpm_mnist5k" --sweep ddim:20 ddim:50 ddim:100 ;;
    ddpm_cond|score_vp|score_subvp|score_ve)
      train "${model}_mnist5k" "$model" "${UNET[@]}" "${short[@]}"
      gmzoo evaluate --workdir "$RUNS/${model}_mnist5k" ;;
    cascaded)
      train cascaded_mnist5k cascaded "${UNET[@]}" "${short[@]}"
      gmzoo evaluate --workdir "$RUNS/cascaded_mnist5k" ;;
    latent_ddpm)
      train ae_mnist5k ae --set data.scale=symmetric --set model.latent_dim=16 \
          --set train.steps=3000 --set train.sample_every=0
      train latent_ddpm_mnist5k latent_ddpm --set data.scale=symmetric --set sample.steps=50 "${short[@]}" \
          --set train.steps=3000 --set train.checkpoint_every=3000 \
          --set model.autoencoder="$RUNS/ae_mnist5k"
      gmzoo evaluate --workdir "$RUNS/latent_ddpm_mnist5k" ;;
    *) echo "unknown model $model" >&2; exit 2 ;;
  esac
done
