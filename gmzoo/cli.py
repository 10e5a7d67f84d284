"""The ``gmzoo`` command line: ``train``, ``sample``, ``evaluate``, ``list``, ``bench``.

Flags become config dataclasses here, once, at the edge; everything below takes typed configs.
Bad input is refused with one line before any compute (exit status 2).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys

from gmzoo.config import ConfigError, ExperimentConfig


def load_experiment(spec: str) -> ExperimentConfig:
    """A model name from ``gmzoo list`` (its default experiment) or a path to an experiment file
    under ``experiments/`` defining ``get_config() -> ExperimentConfig``."""
    from gmzoo import zoo

    if spec.endswith(".py") or os.sep in spec:
        if not os.path.isfile(spec):
            raise ConfigError(f"experiment file {spec!r} does not exist; pass a model name "
                              f"({', '.join(sorted(zoo.models()))}) or a path like "
                              "experiments/vae_mnist5k.py")
        mod_spec = importlib.util.spec_from_file_location("gmzoo_experiment", spec)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        if not hasattr(module, "get_config"):
            raise ConfigError(f"{spec} defines no get_config() returning an ExperimentConfig")
        return module.get_config()
    return zoo.get(spec).default()


def _default_workdir(config: ExperimentConfig) -> str:
    return os.path.join("runs", f"{config.model.name}_{config.data.name}")


def cmd_train(args: argparse.Namespace) -> None:
    from gmzoo import config as cfglib
    from gmzoo import zoo
    from gmzoo.train.checkpoint import Checkpointer
    from gmzoo.train.loop import is_run, train

    config = load_experiment(args.config)
    workdir = args.workdir or _default_workdir(cfglib.override(config, args.set or []))
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if args.resume and os.path.isdir(ckpt_dir) and is_run(workdir):
        # Continue the saved run: its config, plus only what --set changes (read-only: a
        # training still writing there is refused later, not disturbed).
        ckpt = Checkpointer(ckpt_dir, read_only=True)
        try:
            if ckpt.latest_step() is not None:
                saved = zoo.experiment_from_dict(ckpt.restore_config())
                if saved.model.name != config.model.name:
                    raise ConfigError(f"{workdir} holds a {saved.model.name!r} run, not "
                                      f"{config.model.name!r}")
                config = saved
        finally:
            ckpt.close()
    config = cfglib.override(config, args.set or [])
    train(config, workdir, zoo.get, resume=args.resume, overwrite=args.overwrite)


# gmzoo sample flags -> sample.* config keys
_SAMPLE_FLAGS = ("sampler", "steps", "eta", "guidance", "guide", "class_label", "ode_method",
                 "corrector_steps", "snr")


def cmd_sample(args: argparse.Namespace) -> None:
    from gmzoo import zoo
    from gmzoo.train.loop import load_run, save_samples

    options = [(key, getattr(args, key)) for key in _SAMPLE_FLAGS if getattr(args, key) is not None]
    tag = "".join(f"_{key}-{value}" for key, value in options)
    out = args.out or os.path.join(args.workdir, "samples", f"sample{tag}_seed{args.seed}.png")
    if os.path.exists(out) and not args.overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite or another --out")
    if args.n <= 0:
        raise ConfigError(f"--n={args.n} must be a positive number of samples")
    overrides = [f"sample.{key}={value}" for key, value in options]
    if args.sampler is not None and args.steps is None:
        overrides.append("sample.steps=0")  # another sampler: its own default step count
    run, state = load_run(args.workdir, zoo.get, overrides=overrides)
    save_samples(run, state.ema_params, out, args.n, seed=args.seed)
    what = ("test examples (source | output | target)" if run.recipe.translate is not None
            else "samples")
    print(f"{args.n} {what} of {run.config.model.name} written to {os.path.abspath(out)}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from gmzoo import zoo
    from gmzoo.train.evaluate import evaluate

    for item in args.set or []:
        key = item.split("=", 1)[0].strip()
        if not (key.startswith(("eval.", "sample.")) or key == "data.data_dir"):
            raise ConfigError(f"evaluate --set takes eval.*, sample.* keys and data.data_dir, got {key!r} "
                              "(the model and its training config come from the checkpoint)")
    if args.sweep:
        from gmzoo.train.evaluate import sampler_sweep

        sampler_sweep(args.workdir, args.sweep, zoo.get, overrides=args.set or [])
        return
    evaluate(args.workdir, zoo.get, overrides=args.set or [])


def cmd_list(args: argparse.Namespace) -> None:
    """What the families say about themselves: each row's description, then each family's own
    sample and eval options (from their config sections), then the data sets."""
    import dataclasses

    from gmzoo import zoo
    from gmzoo.config import EvalConfig
    from gmzoo.data import registry

    print("models (gmzoo train NAME):")
    for name, r in sorted(zoo.models().items()):
        print(f"  {name:12s} {r.description}")
    shared = {f.name for f in dataclasses.fields(EvalConfig)}
    for section, cls_of, skip in (("sample", lambda r: r.sample_cls, set()),
                                  ("eval", lambda r: r.eval_cls, shared)):
        groups: dict[type, list[str]] = {}
        for name, r in sorted(zoo.models().items()):
            groups.setdefault(cls_of(r), []).append(name)
        print(f"{section} options (--set {section}.KEY=VALUE; gmzoo sample / evaluate):")
        if section == "eval":
            print(f"  every model: {', '.join(f'{k}' for k in sorted(shared))}")
        for cls, names in groups.items():
            fields = [f for f in dataclasses.fields(cls) if f.name not in skip]
            if not fields:
                continue
            doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split()).replace("``", "")
            print(f"  {', '.join(names)}: {doc}")
            for f in fields:
                choices = f.metadata.get("choices")
                allowed = f" ({' | '.join(choices)})" if choices else ""
                print(f"      {section}.{f.name} = {f.default!r}{allowed}")
        if section == "sample":
            print("  (other models: one sampler and no options)")
    samplers = sorted({s for r in zoo.models().values() for s in r.samplers})
    if samplers:
        print(f"samplers (gmzoo sample --sampler NAME): {', '.join(samplers)}; per model:")
        for name, r in sorted(zoo.models().items()):
            if r.samplers:
                print(f"  {name:12s} {', '.join(r.samplers)} (default {r.samplers[0]})")
    print("data sets (--set data.name=NAME):")
    for name in registry.list_datasets():
        kind = ("2-D points" if name in registry.TOY_SETS
                else "embedded images" if name in registry.DATASETS else "TFDS images")
        print(f"  {name:14s} {kind}")
    print("experiments: the files under experiments/ (gmzoo train experiments/FILE.py)")


def cmd_bench(args: argparse.Namespace) -> None:
    script = os.path.join("benchmarks", "run.py")
    if not os.path.isfile(script):
        raise ConfigError("gmzoo bench runs benchmarks/run.py from the root of a gmzoo checkout; "
                          f"none found under {os.getcwd()}")
    sys.exit(subprocess.call([sys.executable, script, *args.rest]))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gmzoo", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model (name or experiment file)")
    t.add_argument("config", help="a model name from `gmzoo list` or experiments/FILE.py")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=200 (repeatable)")
    t.add_argument("--workdir", help="where checkpoints, logs and samples go "
                                     "(default runs/MODEL_DATA)")
    t.add_argument("--resume", action="store_true", help="continue the run in --workdir")
    t.add_argument("--overwrite", action="store_true", help="delete --workdir and start over")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="draw a sample grid from a trained run")
    s.add_argument("--workdir", required=True)
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="PNG path (default WORKDIR/samples/sample_seedS.png)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    s.add_argument("--sampler", help="diffusion models: ddpm | ddim | em | rd | pc | ode "
                                     "(the model's list in `gmzoo list`)")
    s.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    s.add_argument("--eta", type=float, help="DDIM noise, 0 (deterministic) to 1")
    s.add_argument("--guidance", type=float, help="guidance weight w")
    s.add_argument("--guide", choices=("free", "classifier"),
                   help="classifier-free (conditional models) or classifier guidance")
    s.add_argument("--class", dest="class_label", type=int, help="class to draw (-1: all in turn)")
    s.add_argument("--ode-method", dest="ode_method", choices=("euler", "heun", "rk4"))
    s.add_argument("--corrector-steps", dest="corrector_steps", type=int)
    s.add_argument("--snr", type=float, help="Langevin corrector signal-to-noise ratio")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("evaluate", help="NLL, FD and KID of a trained run, beside baselines")
    e.add_argument("--workdir", required=True)
    e.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override an eval value, e.g. --set eval.iwae_k=5000")
    e.add_argument("--sweep", nargs="+", metavar="SAMPLER[:STEPS][,KEY=VALUE]",
                   help="diffusion models: FD/KID under each sampler setting instead of the full "
                        "report, e.g. --sweep ddpm ddim:10 ddim:50 pc:500 ode:100,ode_method=heun")
    e.set_defaults(func=cmd_evaluate)

    ls = sub.add_parser("list", help="models, data sets and samplers")
    ls.set_defaults(func=cmd_list)

    b = sub.add_parser("bench", help="run the benchmarks (from a gmzoo checkout)")
    b.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for benchmarks/run.py")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # every flag after `bench` belongs to benchmarks/run.py
        args = argparse.Namespace(func=cmd_bench, rest=argv[1:])
    else:
        args = build_parser().parse_args(argv)
    from gmzoo.data.tfds_source import DatasetUnavailableError
    from gmzoo.train.loop import NonFiniteError

    try:
        args.func(args)
    except (ConfigError, DatasetUnavailableError) as e:
        print(f"gmzoo: error: {e}", file=sys.stderr)
        sys.exit(2)
    except NonFiniteError as e:
        print(f"gmzoo: stopped: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
