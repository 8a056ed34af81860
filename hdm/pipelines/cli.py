"""The ``hdm`` command line.

    hdm train CONFIG.yaml [--out DIR] [--resume] [--set key=value ...]
    hdm sample CHECKPOINT --n N --sampler {em,heun,dpm2m,pc} --steps K --seed S
               --out FILE.nc [--points P]
    hdm downscale [CHECKPOINT] [--config FILE.yaml] [--set key=value ...]
               (--coarse FILE | --truth FILE --factor F)
               [--stations FILE.csv | --simulate-stations IDS] --members M --out OUT.zarr
               [--times START END] [--scale S] [--guidance mmps|sda|dps|replacement]
               [--scheduler local|synchronous|slurm|pbs|ADDRESS] [--workers W]
               [--chunk-size K] [--resume | --overwrite]
    hdm process-new --config CONFIG --inbox DIR --out-dir DIR [--pattern GLOB]
    hdm evaluate functional --dataset NAME --samples FILE.nc [--json] [--plot FILE.png]
    hdm evaluate downscale --prediction OUT.zarr --truth FILE [--heldout-stations IDS|FILE]
               [--json]
    hdm benchmark functional [--quick]
    hdm benchmark data [--quick]
    hdm benchmark batch [--quick]
    hdm benchmark downscale [--quick] [--parts grf,uk]
    hdm config show CONFIG.yaml [--set key=value ...]
    hdm demo [--out DIR] [--members M] [--functional]

Exit codes (what a scheduler or cron wrapper tests): 0 done; 1 a run failed (training
diverged, a batch chunk failed: the chunks done are kept, rerun with --resume); 2 bad
input (a config, file, name, grid, store or scheduler that cannot be used), with a
one-line message naming the problem; 3 nothing new to do (every chunk of the output is
already done); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NOTHING_TO_DO = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hdm", description="Hilbert-space diffusion models.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("config", help="YAML config, e.g. configs/functional/quadratic.yaml")
    t.add_argument("--out", help="output folder (default runs/<name>)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.steps=100",
    )
    t.add_argument("--no-progress", action="store_true")

    s = sub.add_parser("sample", help="draw functions from a trained model")
    s.add_argument("checkpoint", help="model.pt or checkpoint.pt written by hdm train")
    s.add_argument("--n", type=int, default=1000, help="number of functions")
    s.add_argument("--sampler", default="heun", help="em, heun, dpm2m or pc")
    s.add_argument("--steps", type=int, default=50)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="netCDF file to write")
    s.add_argument("--points", type=int, help="sample on P points instead of the training grid")
    s.add_argument("--batch-size", type=int, default=1000)
    s.add_argument("--no-progress", action="store_true")

    ds_ = sub.add_parser(
        "downscale",
        help="coarse fields + stations -> high-res ensembles (a batch job over a time range)",
    )
    ds_.add_argument("checkpoint", nargs="?", help="model.pt of a gridded model (or its folder)")
    ds_.add_argument("--config", help="a downscaling config, e.g. configs/downscale/uk_t2m.yaml")
    ds_.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value"
    )
    src = ds_.add_mutually_exclusive_group()
    src.add_argument("--coarse", help="coarse field (netCDF/zarr), an integer coarse-graining")
    src.add_argument("--truth", help="high-res field to coarse-grain by --factor (an OSSE)")
    ds_.add_argument("--factor", type=int, help="coarse-graining factor for --truth")
    obs = ds_.add_mutually_exclusive_group()
    obs.add_argument(
        "--stations",
        help="CSV station table (id, lat, lon, time, value) or IGRA2 sounding files "
        "(surface temperature), several separated by commas",
    )
    obs.add_argument(
        "--simulate-stations",
        metavar="IDS",
        help="comma-separated IGRA2 ids; values sampled from --truth with --station-noise",
    )
    ds_.add_argument("--members", type=int, help="ensemble size (default 16)")
    ds_.add_argument("--out", help="OUT.zarr or OUT.nc")
    ds_.add_argument("--times", nargs=2, metavar=("START", "END"), help="ISO times, inclusive")
    ds_.add_argument("--every", type=int, metavar="HOURS", help="every HOURS hours (default 1)")
    ds_.add_argument("--scale", type=int, help="sample at S x the training resolution")
    ds_.add_argument("--guidance", help="mmps (default), sda, dps or replacement")
    ds_.add_argument("--sampler", help="em (default), heun, dpm2m or pc")
    ds_.add_argument("--steps", type=int, help="sampler steps (default 50)")
    ds_.add_argument("--seed", type=int)
    ds_.add_argument("--station-noise", type=float, help="std, field units (default 0.5)")
    ds_.add_argument("--coarse-noise", type=float, help="std, field units (default 2%% of std)")
    ds_.add_argument(
        "--inflation",
        help="none (default), auto (estimated from the stations' residuals about the coarse "
        "field) or a factor >= 1 for the spread the observations do not see",
    )
    ds_.add_argument("--chunk-size", type=int, help="times per task (default 4)")
    ds_.add_argument(
        "--scheduler",
        help="local (a LocalCluster, default), synchronous (this process), slurm, pbs, "
        "or the ADDRESS of a running Dask scheduler (tcp://host:8786)",
    )
    ds_.add_argument("--workers", type=int, help="LocalCluster worker processes (default 1)")
    ds_.add_argument("--torch-threads", type=int, help="torch threads per task (default 2)")
    mode = ds_.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="complete an interrupted OUT")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    ds_.add_argument("--no-plots", action="store_true")
    ds_.add_argument("--no-progress", action="store_true")

    pn = sub.add_parser(
        "process-new",
        help="downscale the input files that arrived since the last run (cron / SLURM)",
    )
    pn.add_argument("--config", required=True, help="downscaling config (configs/downscale/)")
    pn.add_argument("--inbox", required=True, help="folder where new input files arrive")
    pn.add_argument("--out-dir", required=True, help="folder of the output stores")
    pn.add_argument("--pattern", default="*.nc", help="input file glob (default *.nc)")
    pn.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    pn.add_argument("--progress", action="store_true")

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

    b = sub.add_parser("benchmark", help="run a benchmark and write BENCHMARKS.md")
    bsub = b.add_subparsers(dest="what", required=True)
    bf = bsub.add_parser("functional", help="the functional (1-D) benchmark")
    bf.add_argument("--quick", action="store_true", help="a few minutes, small settings")
    bf.add_argument("--out", default="runs/benchmark-functional", help="work folder")
    bf.add_argument("--benchmarks-file", default="BENCHMARKS.md")
    bf.add_argument(
        "--retrain",
        action="store_true",
        help="retrain the shipped models too, not only the ablations",
    )

    bdn = bsub.add_parser("downscale", help="GRF exactness, UK t2m test week, zero-shot SR, speed")
    bdn.add_argument("--quick", action="store_true", help="smoke sizes (minutes)")
    bdn.add_argument("--benchmarks-file", default="BENCHMARKS.md")
    bdn.add_argument("--out", default="runs/benchmark-downscale", help="work folder")
    bdn.add_argument(
        "--parts",
        default="grf,uk",
        help="comma-separated subset of: grf (exactness + speed), uk (test week + SR), "
        "sampler (the sampler choice on a training-period day), "
        "q (the UK prior's Q against the training data's spectrum)",
    )

    bb = bsub.add_parser("batch", help="batch downscaling: fields per minute, 1 vs 2 workers")
    bb.add_argument("--quick", action="store_true", help="small settings (a few minutes)")
    bb.add_argument("--benchmarks-file", default="BENCHMARKS.md")
    bb.add_argument("--out", default="runs/benchmark-batch", help="work folder")

    bd = bsub.add_parser("data", help="the data-layer benchmark (scale, stores, throughput)")
    bd.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run")
    bd.add_argument("--benchmarks-file", default="BENCHMARKS.md")

    c = sub.add_parser("config", help="inspect configs")
    csub = c.add_subparsers(dest="what", required=True)
    cs = csub.add_parser("show", help="print the resolved config")
    cs.add_argument("config")
    cs.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

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
        cfg, out, resume=args.resume, progress=not args.no_progress, run_id=args.run_id
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
    from hdm.pipelines.sample import sample_checkpoint, write_netcdf

    ds = sample_checkpoint(
        args.checkpoint,
        n=args.n,
        sampler=args.sampler,
        steps=args.steps,
        seed=args.seed,
        points=args.points,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    path = write_netcdf(ds, args.out)
    print(
        f"wrote {args.n} samples ({ds.attrs['sampler']}, {ds.attrs['nfe']} NFE, "
        f"{ds.attrs['sampling_wall_time_s']:.1f} s) on {ds.sizes['x']} points to {path}"
    )
    return EXIT_OK


def _evaluate_downscale(args) -> int:
    from hdm.pipelines.evaluate import evaluate_downscale

    report = evaluate_downscale(
        args.prediction,
        args.truth,
        heldout=args.heldout_stations,
        checkpoint=args.checkpoint,
        plots_prefix=args.plots,
    )
    if args.json:
        print(json.dumps(report))
        return EXIT_OK
    print_downscale_report(report)
    return EXIT_OK


def print_downscale_report(report: dict) -> None:
    """The scores of ``evaluate_downscale`` as a short table."""
    units = report["units"]
    print(f"{report['variable']} ({units}), {report['times']} times x {report['members']} members")
    rows = [
        ("RMSE ensemble mean", "rmse"),
        ("RMSE bilinear", "rmse_bilinear"),
        ("RMSE bicubic", "rmse_bicubic"),
        ("RMSE kriging", "rmse_kriging"),
        ("CRPS (fair)", "crps"),
        ("CRPS kriging (Gaussian)", "crps_kriging"),
        ("spread-skill", "spread_skill"),
        ("inflation λ", "inflation"),
        ("coverage 90%", "coverage90"),
        ("coverage 90% kriging", "coverage90_kriging"),
        ("held-out RMSE", "heldout_rmse"),
        ("held-out RMSE kriging", "heldout_rmse_kriging"),
        ("spectrum ratio (high k)", "spectrum_ratio"),
        ("spectrum ratio bicubic", "spectrum_ratio_bicubic"),
        ("spectrum ratio kriging", "spectrum_ratio_kriging"),
    ]
    for label, key in rows:
        if key in report:
            print(f"  {label:<26} {report[key]:.4g}")


def _evaluate(args) -> int:
    if args.what == "downscale":
        return _evaluate_downscale(args)
    from hdm.pipelines.evaluate import evaluate_functional

    report = evaluate_functional(args.dataset, args.samples, quick=args.quick)
    if args.plot:
        from hdm.domains.functional import curves, load_functional
        from hdm.pipelines.evaluate import on_dataset_grid, open_samples
        from hdm.plotting import plot_functions

        ds = load_functional(
            args.dataset, seed=int(open_samples(args.samples).attrs.get("data_seed", 0))
        )
        gen, _ = on_dataset_grid(open_samples(args.samples)["y"], ds["x"].values)
        report["plot"] = str(
            plot_functions(
                args.plot,
                ds["x"].values,
                gen,
                curves(ds, "test").values,
                title=f"{args.dataset}: generated vs real",
                x_label=ds.attrs.get("x_units", "x"),
            )
        )
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
    return EXIT_OK


def format_report(r: dict) -> str:
    def ci(key):
        lo, hi = r[key]
        return f"[{lo:.1f}, {hi:.1f}]"

    lines = [
        f"dataset {r['dataset']}: {r['n_generated']} generated vs {r['n_test']} test curves "
        f"({r['grid']}; {r.get('sampler', '')}, {r.get('nfe', 0)} NFE)",
        f"  power, rigorous (n={r['n_per_side']}/side): {r['power_rigorous']:.1f}% "
        f"{ci('power_rigorous_ci')}   null calibration (real held-out): "
        f"{r['power_null']:.1f}% {ci('power_null_ci')}",
        f"  power, HDM-compatible (10 vs 10): {r['power_hdm']:.1f} ± {r['power_hdm_pm']:.1f}",
        f"  MMD²: {r['mmd2']:.2e}   floor (real vs real): {r['mmd2_floor']:.2e}",
        f"  mean error (rel. L²): {r['mean_rel_l2']:.3f}   floor: {r['mean_rel_l2_floor']:.3f}",
        f"  covariance error (rel. HS): {r['cov_rel_hs']:.3f}   floor: {r['cov_rel_hs_floor']:.3f}",
    ]
    if "plot" in r:
        lines.append(f"  plot: {r['plot']}")
    return "\n".join(lines)


def _downscale(args) -> int:
    from hdm.pipelines.config import read_yaml_config
    from hdm.pipelines.downscale import OPTION_KEYS, downscale_config, run_downscale_job

    base = read_yaml_config(args.config) if args.config else {}
    options = {name: getattr(args, name, None) for name in OPTION_KEYS}
    options["times"] = tuple(args.times) if args.times else None
    options["plots"] = False if args.no_plots else None
    cfg = downscale_config(base, args.set, **options)
    if not cfg.checkpoint:
        raise ValueError("give the CHECKPOINT (or checkpoint: in the --config)")
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

    cfg = load_config(DownscaleRunConfig, args.config, args.set)
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
    if result["status"] == "nothing to do":
        print(f"nothing new in {args.inbox}")
        return EXIT_NOTHING_TO_DO
    return EXIT_FAILED if result["failed"] else EXIT_OK


def _benchmark(args) -> int:
    if args.what == "downscale":
        parts = {p.strip() for p in args.parts.split(",") if p.strip()}
        unknown = parts - {"grf", "uk", "sampler", "q"}
        if unknown:
            raise ValueError(f"unknown --parts {sorted(unknown)}; choose from grf, uk, sampler, q")
        command = "hdm benchmark downscale" + (" --quick" if args.quick else "")
        if args.parts != "grf,uk":
            command += f" --parts {args.parts}"
        if "grf" in parts:
            from hdm.pipelines.benchmark_downscale import run_grf_benchmark

            run_grf_benchmark(args.quick, Path(args.benchmarks_file), command=command)
        if "q" in parts:
            from hdm.pipelines.benchmark_uk import run_noise_choice

            run_noise_choice(args.quick, Path(args.benchmarks_file), command)
        if "sampler" in parts:
            from hdm.pipelines.benchmark_uk import run_sampler_choice

            run_sampler_choice(args.quick, Path(args.benchmarks_file), command)
        if "uk" in parts:
            from hdm.pipelines.benchmark_uk import run_uk_benchmark

            run_uk_benchmark(args.quick, Path(args.benchmarks_file), Path(args.out), command)
        print(f"benchmark tables written to {args.benchmarks_file}")
        return EXIT_OK
    if args.what == "batch":
        from hdm.pipelines.benchmark_batch import run_batch_benchmark

        result = run_batch_benchmark(args.quick, Path(args.benchmarks_file), Path(args.out))
        for label, r in result["results"].items():
            print(f"{label}: {r['fields_per_min']:.2f} fields/min ({r['wall_s']:.1f} s)")
        print(f"benchmark table written to {args.benchmarks_file}")
        return EXIT_OK
    if args.what == "data":
        from hdm.data.benchmark import run_data_benchmark

        path = run_data_benchmark(quick=args.quick, benchmarks_file=Path(args.benchmarks_file))
        print(f"benchmark table written to {path}")
        return EXIT_OK
    from hdm.pipelines.benchmark import run_functional_benchmark

    path = run_functional_benchmark(
        quick=args.quick,
        work=Path(args.out),
        benchmarks_file=Path(args.benchmarks_file),
        retrain=args.retrain,
    )
    print(f"benchmark table written to {path}")
    return EXIT_OK


def _config(args) -> int:
    from hdm.pipelines.config import (
        DownscaleRunConfig,
        TrainRunConfig,
        load_config,
        read_yaml_config,
    )

    # a downscaling config names a checkpoint, a training config its data
    kind = DownscaleRunConfig if "checkpoint" in read_yaml_config(args.config) else TrainRunConfig
    cfg = load_config(kind, args.config, args.set)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return EXIT_OK


def _demo(args) -> int:
    if args.functional:
        from hdm.pipelines.demo import run_demo

        run_demo(Path(args.out), n=args.n)
        return EXIT_OK
    from hdm.pipelines.demo import run_downscale_demo

    run_downscale_demo(Path(args.out), members=args.members)
    return EXIT_OK


COMMANDS = {
    "train": _train,
    "sample": _sample,
    "downscale": _downscale,
    "process-new": _process_new,
    "evaluate": _evaluate,
    "benchmark": _benchmark,
    "config": _config,
    "demo": _demo,
}


#: Commands whose network evaluations are guided (autograd): huge pages make them faster.
HUGE_PAGE_COMMANDS = ("downscale", "process-new", "demo")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in HUGE_PAGE_COMMANDS:
        from hdm.allocator import use_huge_pages

        use_huge_pages()  # before torch loads (hdm.allocator)

    from hdm.hilbert.networks import GridError
    from hdm.hilbert.training import CheckpointError, TrainingDiverged
    from hdm.pipelines.batch import BatchError, SchedulerUnreachable
    from hdm.pipelines.config import ConfigError
    from hdm.pipelines.runlog import configure_logging, current_run_id

    args.run_id = current_run_id()
    configure_logging(args.run_id, args.verbose)
    try:
        return COMMANDS[args.command](args)
    except TrainingDiverged as exc:
        print(f"hdm: training failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except SchedulerUnreachable as exc:
        print(f"hdm: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BatchError as exc:
        print(f"hdm: run failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (
        ConfigError,
        CheckpointError,
        GridError,
        FileNotFoundError,
        FileExistsError,
        PermissionError,
        KeyError,
        ValueError,
    ) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"hdm: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("hdm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
