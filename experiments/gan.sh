#!/usr/bin/env bash
# The adversarial rows of the README's results table: each GAN trained with its defaults (or on
# another data set), then `gmzoo evaluate` (FD/KID; PSNR/SSIM for the image-to-image models;
# mode coverage for gan_toy).
#
#     bash experiments/gan.sh RUNS_DIR [MODEL ...]                   (default: all of them)
#     DATA=mnist5k STEPS=2000 bash experiments/gan.sh runs dcgan     (another data set / length)
set -euo pipefail
RUNS=${1:-runs}; shift || true
MODELS=${*:-gan_toy dcgan cgan wgan_gp vae_gan pix2pix srgan cyclegan}
for model in $MODELS; do
  args=(--set train.progress_bar=false)
  dir=$model
  if [[ -n "${DATA:-}" ]]; then args+=(--set data.name="$DATA"); dir=${model}_$DATA; fi
  if [[ -n "${STEPS:-}" ]]; then args+=(--set train.steps="$STEPS"); fi
  /usr/bin/time -f "$dir train wall %e s" gmzoo train "$model" --workdir "$RUNS/$dir" "${args[@]}"
  gmzoo evaluate --workdir "$RUNS/$dir"
done
