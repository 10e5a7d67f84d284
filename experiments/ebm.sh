#!/usr/bin/env bash
# The energy-based rows of the README's results: `ebm` on digits (FD/KID beside held-out data,
# a grid of chains from noise) and `ebm_toy` on the 2-D toy sets (test NLL with log Z by
# quadrature, energy contour plots), each trained with its defaults, then `gmzoo evaluate`;
# beside the toys, `gmm_toy` (K = 8 for ring8, 25 for grid25, 16 for moons and swiss_roll) as a
# reference NLL.
#
# digits: the default run (short-run chains from noise every step, model.reinit=1);
# digits_lr3e-4: the same at learning rate 3e-4; digits_buffer: IGEBM's persistent buffer
# (model.reinit=0.05) for 1,000 steps; digits_lr: the buffer at learning rate 1e-3, 400 steps.
#
# checks (after the toys): the true densities' test NLL, log Z on finer grids and wider boxes,
# and the share of exp(-E)'s mass nearest each mixture centre.
#
#     bash experiments/ebm.sh RUNS_DIR [digits] [digits_lr3e-4] [digits_buffer] [digits_lr]
#                             [ring8 grid25 moons swiss_roll] [gmm] [checks]
#                                                           (default: all of them)
#     STEPS=1000 bash experiments/ebm.sh runs ring8          (another length)
set -euo pipefail
RUNS=${1:-runs}; shift || true
WHAT=${*:-digits digits_lr3e-4 digits_buffer digits_lr ring8 grid25 moons swiss_roll gmm checks}
common=(--set train.progress_bar=false)
if [[ -n "${STEPS:-}" ]]; then common+=(--set train.steps="$STEPS"); fi
toy_args() {  # the noise range must cover the set (grid25 reaches 4.25)
  case $1 in grid25) echo "--set data.name=grid25 --set model.noise_range=-5,5" ;;
             *) echo "--set data.name=$1" ;; esac
}
gmm_k() { case $1 in ring8) echo 8 ;; grid25) echo 25 ;; *) echo 16 ;; esac; }
for what in $WHAT; do
  case $what in
    digits)
      /usr/bin/time -f "ebm digits train wall %e s, cpu %U+%S s" \
        gmzoo train ebm --workdir "$RUNS/digits" "${common[@]}"
      gmzoo evaluate --workdir "$RUNS/digits" ;;
    digits_lr3e-4)
      /usr/bin/time -f "ebm digits lr 3e-4 train wall %e s, cpu %U+%S s" \
        gmzoo train ebm --workdir "$RUNS/digits_lr3e-4" "${common[@]}" \
        --set optim.learning_rate=3e-4
      gmzoo evaluate --workdir "$RUNS/digits_lr3e-4" ;;
    digits_buffer)
      /usr/bin/time -f "ebm digits buffer train wall %e s, cpu %U+%S s" \
        gmzoo train ebm --workdir "$RUNS/digits_buffer" "${common[@]}" \
        --set model.reinit=0.05 --set train.steps=1000
      gmzoo evaluate --workdir "$RUNS/digits_buffer" ;;
    digits_lr)
      /usr/bin/time -f "ebm digits lr 1e-3 train wall %e s, cpu %U+%S s" \
        gmzoo train ebm --workdir "$RUNS/digits_lr1e-3" "${common[@]}" --set model.reinit=0.05 \
        --set optim.learning_rate=1e-3 --set train.steps=400 --set train.checkpoint_every=400
      gmzoo evaluate --workdir "$RUNS/digits_lr1e-3" ;;
    ring8|grid25|moons|swiss_roll)
      # shellcheck disable=SC2046
      /usr/bin/time -f "ebm_toy $what train wall %e s, cpu %U+%S s" \
        gmzoo train ebm_toy --workdir "$RUNS/$what" "${common[@]}" $(toy_args "$what")
      gmzoo evaluate --workdir "$RUNS/$what" ;;
    gmm)
      for set in ring8 grid25 moons swiss_roll; do
        gmzoo train gmm_toy --workdir "$RUNS/gmm_$set" --set data.name="$set" \
          --set model.num_components="$(gmm_k "$set")" --set train.progress_bar=false
        gmzoo evaluate --workdir "$RUNS/gmm_$set"
      done ;;
    checks)
      python3 - <<'PY'
"""Test NLL (nats/point) of the true densities of gmzoo's toy sets: ring8/grid25 exactly (equal
Gaussian mixtures), moons and swiss_roll by quadrature over the curve parameter t
(p(x) = E_t N(x; gamma(t), 0.05^2 I), t uniform), 20,000 midpoints in t."""
import math
import numpy as np
from gmzoo.data.toys import load_toy

def mix_nll(x, centres, std):
    d2 = ((x[:, None] - centres[None]) ** 2).sum(-1)
    lp = np.logaddexp.reduce(-d2 / (2 * std**2), 1) - math.log(len(centres)) - math.log(2 * math.pi * std**2)
    return -lp.mean()

def curve_nll(x, curve_pts, std=0.05):  # curve_pts [M, 2]: equally weighted points on the curve(s)
    out = []
    for i in range(0, len(x), 200):
        d2 = ((x[i:i+200, None] - curve_pts[None]) ** 2).sum(-1)
        out.append(np.logaddexp.reduce(-d2 / (2 * std**2), 1) - math.log(len(curve_pts)) - math.log(2 * math.pi * std**2))
    return -np.concatenate(out).mean()

M = 20000
for name in ("ring8", "grid25", "moons", "swiss_roll"):
    test = load_toy(name, "test").points.astype(np.float64)
    src = load_toy(name, "train")
    if src.centres is not None:
        nll = mix_nll(test, src.centres.astype(np.float64), src.std)
    elif name == "moons":
        t = (np.arange(M) + 0.5) / M * math.pi
        pts = np.concatenate([np.stack([np.cos(t), np.sin(t)], -1), np.stack([1 - np.cos(t), 0.5 - np.sin(t)], -1)])
        nll = curve_nll(test, pts)
    else:
        t = 1.5 * math.pi * (1 + 2 * (np.arange(M) + 0.5) / M)
        nll = curve_nll(test, np.stack([t * np.cos(t), t * np.sin(t)], -1) / 5)
    print(f"{name}: true-density test NLL {nll:.4f} nats/point")
PY
      for set in ring8 grid25 moons swiss_roll; do
        python3 - "$RUNS/$set" <<'PY'
"""log Z of exp(-E) for an ebm_toy run: the report's box at several grid sizes, and wider boxes
(mass outside the report's box); test NLL with each."""
import math, sys
import numpy as np, jax, jax.numpy as jnp
from gmzoo import zoo
from gmzoo.families.ebm import family

wd = sys.argv[1]
run, state = zoo.load(wd)
params = state.ema_params if getattr(state, "ema_params", None) is not None else state.params
E = lambda x: family._energies(run, params, x).astype(np.float64)
test = family._test_data(run)
e_test = E(test).mean()
lo, hi = family._box(run)
print(wd, "box", lo, hi, "mean E test", e_test)
def logz(lo, hi, n):
    _, _, g = family._grid(np.asarray(lo, float), np.asarray(hi, float), n)
    cell = float(np.prod((np.asarray(hi) - np.asarray(lo)) / (n - 1)))
    e = E(g)
    return float(np.logaddexp.reduce(-e) + math.log(cell)), float(e.min()), g[np.argmin(e)]
for n in (400, 800, 1600):
    lz, emin, at = logz(lo, hi, n)
    print(f"  report box, {n}^2: log Z {lz:.4f}  NLL {e_test + lz:.4f}")
for half in (6.0, 10.0, 20.0):
    lz, emin, at = logz((-half, -half), (half, half), 1600)
    print(f"  box [-{half},{half}]^2, 1600^2: log Z {lz:.4f}  NLL {e_test + lz:.4f}  min E {emin:.3f} at {at}")
PY
      done
      python3 - "$RUNS/ring8" "$RUNS/grid25" <<'PY'
"""Share of exp(-E)'s mass (quadrature on the report's box, 800^2) nearest each mixture centre."""
import sys
import numpy as np
from gmzoo import zoo
from gmzoo.families.ebm import family

for wd in sys.argv[1:]:
    run, state = zoo.load(wd)
    src = run.train_source
    lo, hi = family._box(run)
    _, _, g = family._grid(lo, hi, 800)
    e = family._energies(run, state.ema_params, g).astype(np.float64)
    w = np.exp(-(e - e.min())); w /= w.sum()
    k = np.argmin(((g[:, None] - src.centres[None]) ** 2).sum(-1), 1)
    mass = np.bincount(k, weights=w, minlength=len(src.centres))
    order = np.argsort(-mass)
    print(wd, "mode masses (largest first):", np.round(mass[order], 4).tolist())
    print("  largest at", src.centres[order[0]].tolist(), "; uniform would be", round(1 / len(mass), 4))
PY
      ;;
    *) echo "unknown run $what" >&2; exit 2 ;;
  esac
done
