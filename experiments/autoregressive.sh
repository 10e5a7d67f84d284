#!/usr/bin/env bash
# The autoregressive rows of the README's results: every model of the family trained on
# dynamically binarized mnist5k (Bernoulli; held-out NLL in nats) and on the 17-level digits
# (categorical; bits/dim), then `gmzoo evaluate` (exact held-out log-likelihood beside the
# uniform and per-pixel baselines; FD/KID on 100 samples only: the naive samplers of FVSBN, MADE
# and PixelRNN re-run the whole network for every pixel). One 64-sample grid per run, at its
# last step. `python experiments/autoregressive_table.py RUNS_DIR` prints the table.
#
# Budget (2 CPU cores, about two hours in all): on digits the convolutional, recurrent and
# attention models train 1,000 steps (70 epochs), the others 3,000 (209 epochs); MADE there at
# learning rate 1e-3, not its default 1e-2 (on 1,437 images it overfits: 90.7 nats at 1e-3,
# 94.2 at 3e-3, 134.8 at 1e-2, while on mnist5k 1e-3 underfits: 120.7, 107.8, 107.3).
# On mnist5k only FVSBN and MADE train their defaults (3,000 steps, 75 epochs); the rest are
# cut short: NADE,
# WaveNet, the Row LSTM and the PixelCNNs (at 32 features and 5 layers) 400 steps (10 epochs),
# the Diagonal BiLSTM 300, the transformer 100 at d_model 64, 2 heads and 2 layers (full
# attention over 784 tokens is ~19 s/step at its default size here).
#
#     bash experiments/autoregressive.sh RUNS_DIR [mnist5k] [digits]     (default: both)
#     ONLY="nade made" bash experiments/autoregressive.sh runs digits     (some models)
set -euo pipefail
RUNS=${1:-runs}; shift || true
WHAT=${*:-mnist5k digits}
MODELS=${ONLY:-fvsbn nade made pixelcnn gated_pixelcnn pixelrnn pixelrnn_diagonal wavenet transformer}
common=(--set train.progress_bar=false --set eval.num_samples=100)
small_conv=(--set model.features=32 --set model.num_layers=5)
digits=(--set data.name=digits --set data.binarize=none --set data.scale=levels
        --set model.likelihood=categorical)
binary=(--set data.name=mnist5k --set data.binarize=dynamic --set model.likelihood=bernoulli)

args() {  # $1 data set, $2 model: the row and its settings, one per line
  local data=$1 model=$2 steps
  case $model in
    pixelrnn_diagonal) echo pixelrnn; echo --set; echo model.layer=diagonal ;;
    *) echo "$model" ;;
  esac
  if [[ $data == mnist5k ]]; then
    case $model in
      fvsbn|made) steps=3000 ;;
      pixelcnn|gated_pixelcnn) steps=400; printf '%s\n' "${small_conv[@]}" ;;
      pixelrnn_diagonal) steps=300 ;;
      transformer) steps=100; printf '%s\n' --set model.num_heads=2 --set model.num_layers=2 ;;
      *) steps=400 ;;
    esac
    printf '%s\n' "${binary[@]}"
  else
    case $model in
      made) steps=3000; printf '%s\n' --set optim.learning_rate=1e-3 ;;  # 1e-2 overfits
      fvsbn|nade|wavenet) steps=3000 ;;
      *) steps=1000 ;;
    esac
    printf '%s\n' "${digits[@]}"
  fi
  printf '%s\n' --set "train.steps=$steps" --set "train.sample_every=$steps"
}

for data in $WHAT; do
  for model in $MODELS; do
    workdir="$RUNS/$data/$model"
    mapfile -t a < <(args "$data" "$model")
    mkdir -p "$RUNS/$data"
    /usr/bin/time -o "$workdir.time" -f "$model $data train wall %e s, cpu %U+%S s" \
      gmzoo train "${a[0]}" --workdir "$workdir" "${common[@]}" "${a[@]:1}"
    gmzoo evaluate --workdir "$workdir"
  done
done
