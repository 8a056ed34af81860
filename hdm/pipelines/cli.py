"""The ``hdm`` command line.

    hdm --version
    hdm train CONFIG.yaml [--out DIR] [--resume | --overwrite] [--set key=value ...]
    hdm sample CHECKPOINT --n N --sampler {heun,sde2m,dpm2m,v3,em,pc} --steps K --seed S
               --out FILE.nc|STORE.zarr [--overwrite] [--points P | --scale S]
               [--teleport auto|LEVEL] [--device cpu|auto|cuda:K]
    hdm gaussian-stats MODEL_DIR [--heldout START..END] [--rank R] [--varsigma-star LEVEL]
                                 [--shrink δ] [--shrink-lowpass CELLS]
    hdm model-stats MODEL_DIR [--levels K] [--fields N] [--fit-s]
    hdm downscale [CHECKPOINT] [--config FILE.yaml] [--set key=value ...]
               (--coarse FILE | --truth FILE --factor F)
               [--stations FILE.csv | --simulate-stations IDS] [--profiles FILE [FILE ...]]
               --members M --out OUT.zarr
               [--times START END] [--scale S] [--guidance mmps|sda|dps|replacement]
               [--scheduler local|synchronous|slurm|pbs|ADDRESS] [--workers W]
               [--chunk-size K] [--teleport auto|LEVEL] [--device cpu|auto|cuda:K]
               [--resume | --overwrite]
    hdm process-new --config CONFIG --inbox DIR --out-dir DIR [--pattern GLOB] [--device D]
    hdm evaluate functional --dataset NAME --samples FILE.nc [--json] [--plot FILE.png]
    hdm evaluate downscale --prediction OUT.zarr --truth FILE [--heldout-stations IDS|FILE]
               [--json]
    hdm shallow-water --out STORE.zarr [--quick] [--trajectories N] [--states S]
               [--nlat NLAT --nlon NLON] [--seed S] [--overwrite]
    hdm config show CONFIG.yaml [--set key=value ...]
    hdm demo [--out DIR] [--members M] [--functional]

Benchmarks are scripts outside the package: ``python -m benchmarks NAME`` (see
``benchmarks/README.md``).

Exit codes (what a scheduler or cron wrapper tests): 0 done; 1 a run failed (training
diverged, a batch chunk failed: the chunks done are kept, rerun with --resume); 2 bad
input (a config, file, name, grid, store or scheduler that cannot be used), with a
one-line message naming the problem; 3 nothing new to do (every chunk of the output is
already done); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM, as SLURM sends at a
job's time limit): both stop the way Ctrl-C does, the chunks done kept for ``--resume``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import warnings
from pathlib import Path

import yaml

from hdm._version import __version__

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NOTHING_TO_DO = 0, 1, 2, 3
DEVICE_HELP = "where to sample: cpu (default), auto (CUDA where torch sees it), cuda or cuda:K"


def _set_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.steps=100 (the value is YAML)",
    )


def _train_parser(sub) -> None:
    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("config", help="YAML config, e.g. configs/functional/quadratic.yaml")
    t.add_argument("--out", help="output folder (default runs/<name>)")
    again = t.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoint.pt (the same config but for optim.steps, optim.lr, "
        "optim.checkpoint_every, optim.amp, name, sample.*; from step 0 where there is none)",
    )
    again.add_argument("--overwrite", action="store_true", help="replace the model already in OUT")
    _set_option(t)
    t.add_argument("--no-progress", action="store_true")


def _sample_parser(sub) -> None:
    s = sub.add_parser("sample", help="draw functions (or fields) from a trained model")
    s.add_argument(
        "checkpoint", help="model.pt or checkpoint.pt written by hdm train (or its folder)"
    )
    s.add_argument("--n", type=int, default=1000, help="number of functions")
    s.add_argument(
        "--sampler",
        default="heun",
        help="heun (default), sde2m, dpm2m, v3 (needs hdm model-stats), em (>= 20 steps) "
        "or pc (>= 20 steps)",
    )
    s.add_argument("--steps", type=int, default=50)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--out", required=True, help="FILE.nc (netCDF) or STORE.zarr (zarr store) to write"
    )
    s.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    s.add_argument("--points", type=int, help="sample on P points instead of the training grid")
    s.add_argument(
        "--scale", type=int, default=1, help="gridded models: sample on a grid S times finer"
    )
    s.add_argument(
        "--teleport",
        help="auto (the ς* of hdm gaussian-stats) or a level ς*: start from the Gaussian of "
        "the training data there (fewer model calls)",
    )
    s.add_argument(
        "--small-scale-level",
        type=float,
        help="models trained with model.small_scale_level: the level z of the fields' small "
        "scales, in stds of the training fields' levels (default 0: their mean)",
    )
    s.add_argument("--batch-size", type=int, default=1000)
    s.add_argument(
        "--runaway-bound",
        default="50",
        help="refuse a sample with a |value| beyond this many training stds (default 50; "
        "none: only non-finite samples are refused)",
    )
    s.add_argument("--device", default="cpu", help=DEVICE_HELP)
    s.add_argument("--no-progress", action="store_true")


def _model_stats_parser(sub) -> None:
    m = sub.add_parser(
        "model-stats",
        help="the empirical model statistics of the v3 sampler (DPM-Solver-v3)",
    )
    m.add_argument("model", help="model.pt (or its folder), with the config.yaml beside it")
    m.add_argument("--levels", type=int, default=40, help="noise levels (default 40)")
    m.add_argument("--fields", type=int, default=128, help="training fields (default 128)")
    m.add_argument("--fit-s", action="store_true", help="fit s too (default s = 0)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--no-progress", action="store_true")


def _gaussian_stats_parser(sub) -> None:
    g = sub.add_parser(
        "gaussian-stats",
        help="the Gaussian of a model's training data and the level ς* to teleport to",
    )
    g.add_argument("model", help="model.pt (or its folder), with the config.yaml beside it")
    g.add_argument("--rank", type=int, help="PCA modes kept (default: all)")
    g.add_argument(
        "--heldout",
        metavar="START..END",
        help="measure ς* on this period of the model's dataset, which it was not trained on "
        "(e.g. a validation split); default: the last --holdout fraction of the training "
        "fields, which the network saw (ς* too high)",
    )
    g.add_argument(
        "--holdout", type=float, default=0.2, help="held-out fraction without --heldout (0.2)"
    )
    g.add_argument(
        "--threshold", type=float, default=0.05, help="largest denoiser difference above ς*"
    )
    g.add_argument("--varsigma-star", type=float, help="use this ς* instead of measuring it")
    g.add_argument(
        "--shrink",
        type=float,
        default=0.0,
        help="δ: shrink the sample covariance toward the low-passed, rescaled Q, "
        "(1 − δ) C + δ s L Q Lᵀ (default 0: the sample covariance; one-channel regional "
        "grids of at most 4,096 points)",
    )
    g.add_argument(
        "--shrink-lowpass",
        type=float,
        metavar="CELLS",
        help="the low-pass L of the shrinkage target, in grid spacings (default 2)",
    )
    g.add_argument("--seed", type=int, default=0)


def _downscale_parser(sub) -> None:
    from hdm.pipelines.job import DOWNSCALE_FLAGS

    d = sub.add_parser(
        "downscale",
        help="coarse fields + stations -> high-res ensembles (a batch job over a time range)",
    )
    d.add_argument("checkpoint", nargs="?", help="model.pt of a gridded model (or its folder)")
    d.add_argument("--config", help="a downscaling config, e.g. configs/downscale/uk_t2m.yaml")
    _set_option(d)
    for flag in DOWNSCALE_FLAGS:
        d.add_argument(
            f"--{flag.name.replace('_', '-')}", type=flag.type, help=flag.help, nargs=flag.nargs
        )
    d.add_argument("--times", nargs=2, metavar=("START", "END"), help="ISO times, inclusive")
    mode = d.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="complete an interrupted OUT")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    d.add_argument("--no-plots", action="store_true")
    d.add_argument("--no-progress", action="store_true")

    pn = sub.add_parser(
        "process-new",
        help="downscale the input files that arrived since the last run (cron / SLURM)",
    )
    pn.add_argument("--config", required=True, help="downscaling config (configs/downscale/)")
    pn.add_argument("--inbox", required=True, help="folder where new input files arrive")
    pn.add_argument("--out-dir", required=True, help="folder of the output stores")
    pn.add_argument("--pattern", default="*.nc", help="input file glob (default *.nc)")
    _set_option(pn)
    pn.add_argument("--device", help=DEVICE_HELP)
    pn.add_argument("--progress", action="store_true")


def _shallow_water_parser(sub) -> None:
    s = sub.add_parser(
        "shallow-water",
        help="simulate the global shallow-water testbed (states of h, u, v) into a zarr store",
    )
    s.add_argument("--out", required=True, help="STORE.zarr to write")
    s.add_argument(
        "--quick",
        action="store_true",
        help="a small store for tests: 33 x 64, 6 runs x 4 states, 1 day of spin-up",
    )
    s.add_argument("--trajectories", type=int, help="independent runs (default 200)")
    s.add_argument("--states", type=int, help="states kept per run (default 20)")
    s.add_argument("--nlat", type=int, help="latitudes, poles included (default 65)")
    s.add_argument("--nlon", type=int, help="longitudes, even (default 128)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--no-progress", action="store_true")


def _evaluate_parser(sub) -> None:
    e = sub.add_parser("evaluate", help="evaluate samples")
    esub = e.add_subparsers(dest="what", required=True)
    ef = esub.add_parser("functional", help="two-sample power and moment errors")
    ef.add_argument("--dataset", required=True)
    ef.add_argument("--samples", required=True, help="netCDF written by hdm sample")
    ef.add_argument("--json", action="store_true", help="print one JSON object")
    ef.add_argument("--quick", action="store_true", help="fewer subsets/permutations")
    ef.add_argument("--plot", help="also write a PNG of curves and bands here")

    ed = esub.add_parser("downscale", help="score a downscaled ensemble against the truth")
    ed.add_argument("--prediction", required=True, help="OUT.zarr / OUT.nc of hdm downscale")
    ed.add_argument("--truth", required=True, help="the high-resolution truth (netCDF/zarr)")
    ed.add_argument("--heldout-stations", help="IGRA2 ids (comma-separated) or a CSV table")
    ed.add_argument("--checkpoint", help="the model (default: the path in the prediction)")
    ed.add_argument("--json", action="store_true", help="print one JSON object")
    ed.add_argument("--plots", metavar="PREFIX", help="write PREFIX_rank_histogram.png, ...")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hdm", description="Hilbert-space diffusion models.")
    p.add_argument("--version", action="version", version=f"hdm {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _sample_parser(sub)
    _gaussian_stats_parser(sub)
    _model_stats_parser(sub)
    _downscale_parser(sub)
    _evaluate_parser(sub)
    _shallow_water_parser(sub)

    c = sub.add_parser("config", help="inspect configs")
    csub = c.add_subparsers(dest="what", required=True)
    cs = csub.add_parser("show", help="print the resolved config")
    cs.add_argument("config")
    _set_option(cs)

    d = sub.add_parser("demo", help="the README's demo on the shipped data")
    d.add_argument("--out", default="outputs/demo")
    d.add_argument("--n", type=int, default=500, help="curves per dataset (--functional)")
    d.add_argument("--members", type=int, default=16, help="ensemble size (downscaling)")
    d.add_argument(
        "--functional", action="store_true", help="the functional (1-D curves) demo instead"
    )
    return p


def _train(args) -> int:
    from hdm.pipelines.config import load_train_config
    from hdm.pipelines.train import run_training

    cfg = load_train_config(args.config, args.set)
    out = Path(args.out or Path("runs") / cfg.name)
    summary = run_training(
        cfg,
        out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        run_id=args.run_id,
    )
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return EXIT_OK
    print(
        f"trained {summary['name']}: {summary['steps']} steps in {summary['wall_time_s']:.0f} s, "
        f"loss {summary['final_loss']:.4f}\n  model:      {summary['model']} "
        f"({summary['model_bytes'] / 1e6:.1f} MB)\n  checkpoint: {summary['checkpoint']}"
    )
    return EXIT_OK


def _sample(args) -> int:
    from hdm.pipelines.sample import check_output, sample, write_samples

    check_output(args.out, overwrite=args.overwrite)  # before any sampling
    ds = sample(
        args.checkpoint,
        n=args.n,
        sampler=args.sampler,
        steps=args.steps,
        seed=args.seed,
        points=args.points,
        scale=args.scale,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        teleport=args.teleport,
        device=args.device,
        runaway_bound=args.runaway_bound,
        small_scale_level=args.small_scale_level,
    )
    path = write_samples(ds, args.out, overwrite=args.overwrite)
    where = f"{ds.sizes['x']} points" if "x" in ds.sizes else ds.attrs["grid"]
    print(
        f"wrote {args.n} samples ({ds.attrs['sampler']}, {ds.attrs['nfe']} NFE, "
        f"{ds.attrs['sampling_wall_time_s']:.1f} s) on {where} to {path}"
    )
    return EXIT_OK


def _shallow_water(args) -> int:
    from hdm.domains.shallow_water import ShallowWaterConfig, generate

    quick = {"nlat": 33, "nlon": 64, "trajectories": 6, "states": 4, "spin_up_hours": 24.0}
    quick = quick if args.quick else {}
    given = {
        k: getattr(args, k)
        for k in ("trajectories", "states", "nlat", "nlon")
        if getattr(args, k) is not None
    }
    cfg = ShallowWaterConfig(**{**quick, **given, "seed": args.seed})
    path = generate(cfg, args.out, overwrite=args.overwrite, progress=not args.no_progress)
    print(
        f"wrote {cfg.trajectories} trajectories x {cfg.states} states of h, u, v on "
        f"{cfg.grid.describe()} to {path}"
    )
    return EXIT_OK


def _evaluate(args) -> int:
    from hdm.pipelines.report import format_downscale_report, format_functional_report

    if args.what == "downscale":
        from hdm.pipelines.evaluate import evaluate_downscale

        report = evaluate_downscale(
            args.prediction,
            args.truth,
            heldout=args.heldout_stations,
            checkpoint=args.checkpoint,
            plots_prefix=args.plots,
        )
        print(json.dumps(report) if args.json else format_downscale_report(report))
        return EXIT_OK
    from hdm.pipelines.evaluate import evaluate_functional, plot_functional

    report = evaluate_functional(args.dataset, args.samples, quick=args.quick)
    if args.plot:
        report["plot"] = str(plot_functional(args.dataset, args.samples, args.plot))
    print(json.dumps(report) if args.json else format_functional_report(report))
    return EXIT_OK


def _downscale(args) -> int:
    from hdm.pipelines.config import read_yaml_config
    from hdm.pipelines.job import DOWNSCALE_FLAGS, downscale_config, run_downscale_job

    base = read_yaml_config(args.config) if args.config else {}
    options = {flag.name: getattr(args, flag.name) for flag in DOWNSCALE_FLAGS}
    options["checkpoint"] = args.checkpoint
    options["times"] = tuple(args.times) if args.times else None
    options["plots"] = False if args.no_plots else None
    cfg = downscale_config(base, args.set, **options)
    summary = run_downscale_job(
        cfg,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        run_id=args.run_id,
    )
    if summary["status"] == "nothing to do":
        print(f"{summary['out']}: all {summary['chunks']} chunks are done; nothing to do")
        return EXIT_NOTHING_TO_DO
    print(
        f"run {summary['run_id']}: wrote {summary['members']} members x {summary['times']} times "
        f"({len(summary['chunks_written'])} of {summary['chunks']} chunks) on "
        f"{summary.get('grid', '')} in {summary['wall_time_s']:.1f} s to {summary['out']}"
    )
    for png in summary["pngs"]:
        print(f"  map: {png}")
    return EXIT_OK


def _process_new(args) -> int:
    from hdm.pipelines.config import DownscaleRunConfig, load_config
    from hdm.pipelines.schedule import process_new

    overrides = [*(args.set or []), *([f"ensemble.device={args.device}"] if args.device else [])]
    cfg = load_config(DownscaleRunConfig, args.config, overrides)
    result = process_new(
        cfg,
        args.inbox,
        args.out_dir,
        pattern=args.pattern,
        progress=args.progress,
        run_id=args.run_id,
    )
    for out in result["processed"]:
        print(f"downscaled: {out}")
    for path in result["failed"]:
        print(f"failed: {path}", file=sys.stderr)
    for path in result["bad_input"]:
        print(f"bad input (skipped): {path}", file=sys.stderr)
    if result["status"] == "busy":
        print(f"hdm: {result['message']}", file=sys.stderr)
        return EXIT_NOTHING_TO_DO
    if result["status"] == "nothing to do":
        print(f"nothing new in {args.inbox}")
        return EXIT_NOTHING_TO_DO
    if result["failed"]:
        return EXIT_FAILED
    return EXIT_BAD_INPUT if result["bad_input"] else EXIT_OK


def _config(args) -> int:
    from hdm.pipelines.config import (
        DownscaleRunConfig,
        TrainRunConfig,
        config_dict,
        load_config,
        read_yaml_config,
    )

    # a downscaling config names a checkpoint, a training config its data
    kind = DownscaleRunConfig if "checkpoint" in read_yaml_config(args.config) else TrainRunConfig
    cfg = load_config(kind, args.config, args.set)
    print(yaml.safe_dump(config_dict(cfg), sort_keys=False), end="")
    return EXIT_OK


def _demo(args) -> int:
    from hdm.pipelines.demo import run_demo, run_downscale_demo

    if args.functional:
        run_demo(Path(args.out), n=args.n)
    else:
        run_downscale_demo(Path(args.out), members=args.members)
    return EXIT_OK


def _gaussian_stats(args) -> int:
    from hdm.pipelines.gaussian_stats import (
        GaussianStatsConfig,
        gaussian_statistics,
        parse_period,
    )

    cfg = GaussianStatsConfig(
        rank=args.rank,
        holdout=args.holdout,
        heldout=None if args.heldout is None else parse_period(args.heldout),
        threshold=args.threshold,
        varsigma_star=args.varsigma_star,
        seed=args.seed,
        shrink=args.shrink,
        **({} if args.shrink_lowpass is None else {"shrink_lowpass": args.shrink_lowpass}),
    )
    stats, out = gaussian_statistics(args.model, cfg)
    star = "not measured" if stats.varsigma_star is None else f"{stats.varsigma_star:.4g}"
    print(
        f"wrote {out}: mean and {stats.rank} modes of {stats.n_fields} fields "
        f"({100 * stats.explained:.1f}% of their variance); teleport level ς* = {star}"
    )
    return EXIT_OK


def _model_stats(args) -> int:
    from hdm.pipelines.model_stats import ModelStatsConfig, model_statistics

    cfg = ModelStatsConfig(levels=args.levels, fields=args.fields, fit_s=args.fit_s, seed=args.seed)
    stats, out = model_statistics(args.model, cfg, progress=not args.no_progress)
    print(f"wrote {out}: l, s, b at {len(stats.lambdas)} levels from {stats.n_fields} fields")
    return EXIT_OK


COMMANDS = {
    "train": _train,
    "sample": _sample,
    "gaussian-stats": _gaussian_stats,
    "model-stats": _model_stats,
    "downscale": _downscale,
    "process-new": _process_new,
    "evaluate": _evaluate,
    "shallow-water": _shallow_water,
    "config": _config,
    "demo": _demo,
}


#: Commands whose network evaluations are guided (autograd): huge pages make them faster.
HUGE_PAGE_COMMANDS = ("downscale", "process-new", "demo")


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean bad input (exit code 2, one line)."""
    from hdm.hilbert.checkpoints import CheckpointError
    from hdm.hilbert.networks import GridError
    from hdm.pipelines.config import ConfigError

    return (
        ConfigError,
        CheckpointError,
        GridError,
        FileNotFoundError,
        FileExistsError,
        PermissionError,
        KeyError,
        ValueError,
    )


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"hdm: warning: {message}\n"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a run stops as on Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated


def _on_sigterm() -> object:
    """Make SIGTERM stop the command as Ctrl-C does (the previous handler is returned;
    None where signals cannot be set, outside the main thread)."""
    try:
        return signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (a notebook's worker)
        return None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in HUGE_PAGE_COMMANDS:
        from hdm.allocator import use_huge_pages

        use_huge_pages()  # before torch loads (hdm.allocator)

    from hdm.conditioning.ensembles import SamplingDiverged
    from hdm.hilbert.training import TrainingDiverged
    from hdm.pipelines.cluster import BatchError, BatchInputError, SchedulerUnreachable
    from hdm.pipelines.runlog import configure_logging, current_run_id

    args.run_id = current_run_id()
    configure_logging(args.run_id, args.verbose)
    formatwarning = warnings.formatwarning
    if not args.verbose:  # one line per warning, not the source line it was raised from
        warnings.formatwarning = _one_line_warning
    previous_sigterm = _on_sigterm()
    try:
        return COMMANDS[args.command](args)
    except TrainingDiverged as exc:
        print(f"hdm: training failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except SamplingDiverged as exc:
        print(f"hdm: sampling failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except SchedulerUnreachable as exc:
        print(f"hdm: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BatchInputError as exc:
        print(f"hdm: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BatchError as exc:
        print(f"hdm: run failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except _bad_input_errors() as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"hdm: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Terminated:
        print("hdm: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("hdm: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = formatwarning
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


if __name__ == "__main__":
    sys.exit(main())
