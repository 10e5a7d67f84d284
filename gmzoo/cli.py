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
        config = module.get_config()
        if isinstance(config, dict):  # the saved-config form: {"model": {"name": ...}, ...}
            if not isinstance(config.get("model"), dict) or "name" not in config["model"]:
                raise ConfigError(f"{spec}: get_config() returned a dict without model.name; "
                                  "return an ExperimentConfig (zoo.config(NAME, overrides)) or "
                                  'a dict like {"model": {"name": "vae", ...}, "train": {...}}')
            from gmzoo import config as cfglib

            base = cfglib.to_dict(zoo.get(config["model"]["name"]).default())
            merged = {k: ({**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict)
                          else v) for k, v in config.items()}  # the model's defaults, then yours
            return zoo.experiment_from_dict({**base, **merged})
        if not isinstance(config, ExperimentConfig):
            raise ConfigError(f"{spec}: get_config() returned a {type(config).__name__}, not an "
                              "ExperimentConfig (or a dict of its sections)")
        return config
    return zoo.get(spec).default()


def _default_workdir(config: ExperimentConfig) -> str:
    return os.path.join("runs", f"{config.model.name}_{config.data.name}")


def join_processes(args: argparse.Namespace) -> bool:
    """Joins the ``jax.distributed`` run the flags describe, before any computation; returns
    whether it did. Refuses an incomplete or inconsistent set of flags in one line."""
    given = {"--coordinator": args.coordinator, "--num-processes": args.num_processes,
             "--process-id": args.process_id}
    if args.distributed and any(v is not None for v in given.values()):
        raise ConfigError("--distributed reads the cluster's environment; pass it alone or "
                          "--coordinator, --num-processes and --process-id instead")
    if not args.distributed and all(v is None for v in given.values()):
        return False
    import jax

    if args.distributed:
        jax.distributed.initialize()
        return True
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise ConfigError(f"several processes need --coordinator, --num-processes and "
                          f"--process-id together; missing {', '.join(missing)}")
    host, _, port = args.coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--coordinator={args.coordinator!r} must be HOST:PORT, e.g. 127.0.0.1:12355")
    if args.num_processes < 1 or not 0 <= args.process_id < args.num_processes:
        raise ConfigError(f"--process-id={args.process_id} must be in 0 .. {args.num_processes - 1} "
                          f"(--num-processes={args.num_processes}, at least 1)")
    jax.distributed.initialize(coordinator_address=args.coordinator,
                               num_processes=args.num_processes, process_id=args.process_id)
    return True


def cmd_train(args: argparse.Namespace) -> None:
    joined = join_processes(args)
    try:
        _train(args)
    finally:
        if joined:
            import jax

            jax.distributed.shutdown()


def _train(args: argparse.Namespace) -> None:
    from gmzoo import config as cfglib
    from gmzoo import zoo
    from gmzoo.train import workdir as folder
    from gmzoo.train.checkpoint import Checkpointer
    from gmzoo.train.loop import train

    config = load_experiment(args.config)
    workdir = args.workdir or _default_workdir(cfglib.override(config, args.set or []))
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if args.resume:
        # A folder that is not a gmzoo run, or one in use, is refused before anything is read.
        folder.prepare(os.path.abspath(workdir), resume=True, overwrite=False, act=False)
    if args.resume and os.path.isdir(ckpt_dir):
        # Continue the saved run: its config, plus only what --set changes (read-only: a
        # training still writing there is refused later, not disturbed).
        with Checkpointer(ckpt_dir, read_only=True) as ckpt:
            newest = ckpt.newest_config()
        if newest is not None:
            saved = zoo.experiment_from_dict(newest)
            if saved.model.name != config.model.name:
                raise ConfigError(f"{workdir} holds a {saved.model.name!r} run, not "
                                  f"{config.model.name!r}")
            config = saved
    config = cfglib.override(config, args.set or [])
    train(config, workdir, zoo.get, resume=args.resume, overwrite=args.overwrite)


# gmzoo sample flags -> sample.* config keys
_SAMPLE_FLAGS = ("sampler", "steps", "eta", "guidance", "guide", "class_label", "ode_method",
                 "corrector_steps", "snr")


def cmd_sample(args: argparse.Namespace) -> None:
    from gmzoo import zoo
    from gmzoo.train import workdir as folder
    from gmzoo.train.loop import inference_params, load_run, save_samples

    if args.steps is not None and args.steps <= 0:
        raise ConfigError(f"--steps={args.steps} must be a positive number of sampler steps; "
                          "leave --steps out for the sampler's default")

    options = [(key, getattr(args, key)) for key in _SAMPLE_FLAGS if getattr(args, key) is not None]
    for item in args.set or []:
        key, _, value = item.partition("=")
        if not key.strip().startswith("sample."):
            raise ConfigError(f"sample --set takes sample.* keys, got {key.strip()!r} (the model "
                              "and its training config come from the checkpoint)")
        options.append((key.strip()[len("sample."):], value.strip()))
    tag = "".join(f"_{key}-{value}" for key, value in options)
    out = args.out or os.path.join(args.workdir, "samples", f"sample{tag}_seed{args.seed}.png")
    if os.path.exists(out) and not args.overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite or another --out")
    if args.n <= 0:
        raise ConfigError(f"--n={args.n} must be a positive number of samples")
    overrides = [f"sample.{key}={value}" for key, value in options]
    if args.sampler is not None and args.steps is None:
        overrides.append("sample.steps=0")  # another sampler: its own default step count
    run, state = load_run(args.workdir, zoo.get, step=_step(args), overrides=overrides)
    save_samples(run, inference_params(run, state), out, args.n, seed=args.seed)
    folder.register(args.workdir, out)  # gmzoo's file: --overwrite of the run deletes it
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

        sampler_sweep(args.workdir, args.sweep, zoo.get, step=_step(args), overrides=args.set or [])
        return
    evaluate(args.workdir, zoo.get, step=_step(args), overrides=args.set or [])


def _step(args: argparse.Namespace) -> int | None:
    if args.step is not None and args.step < 0:
        raise ConfigError(f"--step={args.step} must be a checkpoint step (>= 0)")
    return args.step


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
    t.add_argument("--coordinator", metavar="HOST:PORT",
                   help="several processes (jax.distributed): process 0's address, the same in "
                        "every process; with --num-processes and --process-id")
    t.add_argument("--num-processes", type=int, help="how many processes the run has")
    t.add_argument("--process-id", type=int, help="this process's index, 0 .. num-processes - 1")
    t.add_argument("--distributed", action="store_true",
                   help="join a jax.distributed run described by the cluster's environment "
                        "(Slurm, TPU pods; JAX reads it)")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="draw a sample grid from a trained run")
    s.add_argument("--workdir", required=True)
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="PNG path (default WORKDIR/samples/sample_seedS.png)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    s.add_argument("--step", type=int, help="the checkpoint step to use (default: the newest intact)")
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
    s.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a sample value, e.g. --set sample.temperature=0.8 (the "
                        "model's sample options: `gmzoo list`)")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("evaluate", help="NLL, FD and KID of a trained run, beside baselines")
    e.add_argument("--workdir", required=True)
    e.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override an eval value, e.g. --set eval.iwae_k=5000")
    e.add_argument("--sweep", nargs="+", metavar="SAMPLER[:STEPS][,KEY=VALUE]",
                   help="diffusion models: FD/KID under each sampler setting instead of the full "
                        "report, e.g. --sweep ddpm ddim:10 ddim:50 pc:500 ode:100,ode_method=heun")
    e.add_argument("--step", type=int, help="the checkpoint step to use (default: the newest intact)")
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
    from gmzoo.train.checkpoint import CheckpointError
    from gmzoo.train.loop import NonFiniteError
    from gmzoo.train.workdir import StorageError, io_cause

    try:
        args.func(args)
    except (ConfigError, DatasetUnavailableError) as e:
        print(f"gmzoo: error: {e}", file=sys.stderr)
        sys.exit(2)
    except (NonFiniteError, StorageError) as e:
        print(f"gmzoo: stopped: {e}", file=sys.stderr)
        sys.exit(1)
    except CheckpointError as e:
        print(f"gmzoo: error: {e}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:  # a full disk, a permission, ... outside a training: the cause, once
        print(f"gmzoo: error: {io_cause(e) or e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
