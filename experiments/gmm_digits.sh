#!/usr/bin/env bash
# The Gaussian-mixture rows of the README: `gmm` on dequantized digits (1,437 / 360 split) with
# the defaults (K = 10, full, noise_draws = 8, 100 EM steps), with PCA whitening, and BIC / AIC
# against K (full and diag) with the test bits/dim of each; `gmzoo evaluate` writes the sample
# grid and the component means of every run into RUNS_DIR/RUN/eval/.
#
#     bash experiments/gmm_digits.sh RUNS_DIR [PART ...]    (PART: default whiten sweep; all)
#     KS="1 2 5 10" TYPES=diag bash experiments/gmm_digits.sh runs sweep   (a smaller sweep)
#     JOBS=2 bash experiments/gmm_digits.sh runs         (two sweep runs at a time)
#
# The FD/KID feature net is trained once (by the first evaluate) and copied into the other
# workdirs' feature_net/ cache, so each further evaluate only loads it. A run whose train or
# evaluate fails is named in RUNS_DIR/failed.txt and the others go on. Wall and CPU seconds of
# every stage go to RUNS_DIR/times.tsv; the table of all runs to RUNS_DIR/summary.md.
set -euo pipefail
RUNS=${1:-runs}; shift || true
PARTS=${*:-default whiten sweep}
KS=${KS:-1 2 5 10 20 40}
TYPES=${TYPES:-full diag}
JOBS=${JOBS:-1}  # sweep runs at a time (each is one process; on 2 cores, 2 at most)
mkdir -p "$RUNS"
TIMES="$RUNS/times.tsv"  # run, stage, wall s, CPU s (user + sys)

timed() {  # timed RUN STAGE CMD...: run CMD, append its wall and CPU seconds to $TIMES
  local run=$1 stage=$2; shift 2
  local out="$RUNS/.time.$run.$stage" status=0
  /usr/bin/time -o "$out" -f "%e %U %S" "$@" || status=$?
  tail -1 "$out" | awk -v r="$run" -v s="$stage" \
      '{printf "%s\t%s\t%.1f\t%.1f\n", r, s, $1, $2 + $3}' >> "$TIMES"
  rm -f "$out"
  return $status
}

run() {  # run NAME [--set ...]: train gmm into RUNS/NAME (if not done yet), then evaluate it
  local name=$1; shift
  local dir="$RUNS/$name"
  if ! ls "$dir"/eval/step_*.json >/dev/null 2>&1; then
    if ! timed "$name" train gmzoo train gmm --workdir "$dir" --overwrite \
        --set train.progress_bar=false "$@"; then
      echo "$name: gmzoo train failed ($*)" | tee -a "$RUNS/failed.txt" >&2; return 0
    fi
    local cached
    cached=$(ls "$RUNS"/*/feature_net/feature_net_*.msgpack 2>/dev/null | head -1 || true)
    if [ -n "$cached" ] && [ ! -e "$dir/feature_net/$(basename "$cached")" ]; then
      mkdir -p "$dir/feature_net" && cp "$cached" "$dir/feature_net/"
    fi
    if ! timed "$name" evaluate gmzoo evaluate --workdir "$dir"; then
      echo "$name: gmzoo evaluate failed" | tee -a "$RUNS/failed.txt" >&2
    fi
  fi
}

for part in $PARTS; do
  case $part in
    default) run default ;;
    whiten) run whiten --set model.whiten=true --set model.reg_covar=0.01 ;;
    sweep)
      for type in $TYPES; do
        for k in $KS; do
          if [ "$type" = full ] && [ "$k" = 10 ] && [[ " $PARTS " == *" default "* ]]; then
            continue  # the default run
          fi
          while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
          run "${type}_k${k}" --set model.covariance_type="$type" --set model.num_components="$k" &
        done
      done
      wait ;;
    *) echo "unknown part $part (choose from: default whiten sweep)" >&2; exit 2 ;;
  esac
done

python3 - "$RUNS" <<'EOF' | tee "$RUNS/summary.md"
import glob, json, os, sys
runs = sys.argv[1]
times = {}
if os.path.exists(os.path.join(runs, "times.tsv")):
    for line in open(os.path.join(runs, "times.tsv")):
        name, stage, wall, cpu = line.split("\t")
        times.setdefault(name, {})[stage] = (float(wall), float(cpu))
rows = []
for path in sorted(glob.glob(os.path.join(runs, "*", "eval", "step_*.json"))):
    name = path.split(os.sep)[-3]
    r = json.load(open(path))
    cfg = json.load(open(os.path.join(runs, name, "config.json")))["model"]
    fam, lik = r["family"], r["likelihood"]["model"]
    pick = lambda prefix: next(v for k, v in fam.items() if k.startswith(prefix))
    sq = r.get("sample_quality", {})
    t = times.get(name, {})
    rows.append(dict(
        name=name, type=cfg["covariance_type"], k=cfg["num_components"],
        whiten=cfg["whiten"], reg=cfg["reg_covar"], p=fam["free parameters p"],
        train_ll=pick("train log-likelihood"), bic=pick("BIC"), aic=pick("AIC"),
        nll=lik["nll_nats"], bpd=lik["bits_per_dim"],
        fd=sq.get("FD-digits (samples vs train)"), fd_ref=sq.get("FD-digits reference (held-out real vs train)"),
        wall=sum(w for w, _ in t.values()) if t else None,
        cpu=sum(c for _, c in t.values()) if t else None))
rows.sort(key=lambda r: (r["whiten"], r["type"], r["k"]))
fmt = lambda x, f: "-" if x is None else format(x, f)
print("| run | cov | K | p | train LL (nats/img) | BIC | AIC | test NLL (nats) | test bits/dim | FD-digits (held-out ref) | train + eval wall s (CPU s) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    label = r["name"] + (f" (whiten, reg_covar {r['reg']:g})" if r["whiten"] else "")
    print(f"| {label} | {r['type']} | {r['k']} | {r['p']:,} | {r['train_ll']:.1f} | {r['bic']:,.0f} | "
          f"{r['aic']:,.0f} | {r['nll']:.2f} | {r['bpd']:.4f} | {fmt(r['fd'], '.2f')} ({fmt(r['fd_ref'], '.2f')}) | "
          f"{fmt(r['wall'], '.0f')} ({fmt(r['cpu'], '.0f')}) |")
for type_ in ("full", "diag"):
    sweep = [r for r in rows if r["type"] == type_ and not r["whiten"]]
    if sweep:
        print(f"\n{type_}: lowest BIC at K = {min(sweep, key=lambda r: r['bic'])['k']}, lowest AIC at "
              f"K = {min(sweep, key=lambda r: r['aic'])['k']}, lowest test bits/dim at "
              f"K = {min(sweep, key=lambda r: r['bpd'])['k']}")
EOF
