"""``python -m benchmarks data``: scale and throughput of the data layer (section ``data``).

Three measurements, each with its peak resident memory (RSS):

1. **Streaming at scale.** A synthetic 0.25° global dataset (721 × 1440) over many
   time steps, generated lazily by dask (seeded noise per chunk through
   ``dask.array.map_blocks``, one chunk per time step, never materialised: 2
   variables × 2,600 steps × 721 × 1440 float32 ≈ 21.6 GB in the full run) is passed
   through the opening conventions (:func:`hdm.data.open.normalise_conventions`), a
   :class:`FieldNormaliser` is fitted on a short training slice, and a fixed number of
   shuffled batches is streamed through :class:`FieldDataset` and a torch
   ``DataLoader``. Reported: batches/s and the peak RSS of the process and its
   DataLoader workers.
2. **Writing an ensemble store.** A lazily generated ensemble (10 members × 125 steps ×
   721 × 1440 float32 ≈ 5.2 GB) is written with :func:`write_zarr_ensemble` (one
   region per time step); reported: MB/s (uncompressed) and peak RSS.
3. **Real data.** The ERA5 UK 2 m temperature set (744 × 33 × 49) through the whole
   loader path (``open_fields`` → ``FieldNormaliser`` → ``FieldDataset`` →
   ``DataLoader``) against ``xr.open_dataset(path).t2m.values``; reported: both times
   (best of 3) and their ratio.

Peak RSS: the kernel's high-water mark (``VmHWM``) reset before each measurement
through ``/proc/self/clear_refs`` where Linux allows it, together with a 5 ms sampler of
the RSS of the process plus its children (workers' shared pages are counted in each, so
this over-estimates). ``--quick`` runs tiny sizes as a smoke test and labels the table so.

    python -m benchmarks data [--quick] [--work-dir DIR] [--uk-path FILE]
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from benchmarks.report import command_line, machine_description, parser, write_section
from hdm.data.normalization import FieldNormaliser
from hdm.data.open import normalise_conventions, open_fields
from hdm.data.schema import COORD_ATTRS, KNOWN_VARIABLES, LAT, LON, MEMBER, TIME
from hdm.data.stores import write_zarr_ensemble
from hdm.data.torch_dataset import FieldDataset
from hdm.domains.atmosphere import GRIDDED_DATASETS
from hdm.domains.shipped import ShippedDataError

__all__ = ["DataBenchmarkConfig", "PeakRSS", "main", "run_data_benchmark", "uk_t2m_path"]

log = logging.getLogger("hdm")

SECTION = "data"
#: the packages the data layer is built on, named with the machine
PACKAGES = ("dask", "xarray", "zarr")


@dataclass(frozen=True)
class DataBenchmarkConfig:
    """Sizes of the data benchmark (see the module docstring)."""

    n_lat: int = 721
    n_lon: int = 1440
    variables: tuple[str, ...] = ("t2m", "u10")
    n_time: int = 2600
    fit_steps: int = 24
    batches: int = 40
    batch_size: int = 4
    num_workers: int = 2
    ens_members: int = 10
    ens_time: int = 125
    ens_time_chunk: int = 1
    uk_batch_size: int = 32
    repeats: int = 3


FULL = DataBenchmarkConfig()
QUICK = DataBenchmarkConfig(
    n_lat=37,
    n_lon=72,
    n_time=40,
    fit_steps=4,
    batches=5,
    batch_size=4,
    num_workers=0,
    ens_members=2,
    ens_time=6,
    ens_time_chunk=2,
)


# ------------------------------------------------------------------- memory


def _rss_bytes(pid: int | str = "self") -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _children() -> list[int]:
    pids: list[int] = []
    for task in Path("/proc/self/task").glob("*/children"):
        try:
            pids += [int(p) for p in task.read_text().split()]
        except OSError:
            continue
    return pids


def _hwm_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _pss_bytes(pid: int | str = "self") -> int:
    """Proportional set size: shared pages divided among the processes sharing them."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class PeakRSS:
    """Context manager measuring peak memory inside it (bytes).

    ``peak`` is the peak RSS of this process (the kernel's VmHWM, reset on entry where
    allowed, or sampled); ``peak_total`` the sampled peak of Σ PSS over this process
    and its children (DataLoader workers), which counts shared pages once, and
    ``peak_rss_sum`` the sampled peak of Σ RSS (counts pages shared after ``fork`` in
    every process: an upper bound).
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.peak = 0
        self.peak_total = 0
        self.peak_rss_sum = 0
        self.method = "sampled"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            children = _children()
            own = _rss_bytes()
            self.peak = max(self.peak, own)
            self.peak_rss_sum = max(self.peak_rss_sum, own + sum(_rss_bytes(p) for p in children))
            pss = _pss_bytes() + sum(_pss_bytes(p) for p in children)
            self.peak_total = max(self.peak_total, pss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (Linux ≥ 4.0)
            self.method = "VmHWM"
        except OSError:
            self.method = "sampled"
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        if self.method == "VmHWM":
            self.peak = max(self.peak, _hwm_bytes())
        self.peak_total = max(self.peak_total, self.peak if not _children() else 0)


# -------------------------------------------------------------------- data


def _normal_block(block_info: Any = None, seed: int = 0, loc: float = 0.0, scale: float = 1.0):
    """One chunk of N(loc, scale²) float32 noise, seeded by (seed, chunk location)."""
    info = block_info[None]
    rng = np.random.default_rng([seed, *info["chunk-location"]])
    out = rng.standard_normal(info["chunk-shape"], dtype=np.float32)
    return out * np.float32(scale) + np.float32(loc)


def lazy_noise(
    shape: tuple[int, ...], chunks: tuple[int, ...], seed: int, loc: float, scale: float
):
    """A dask array generated chunk by chunk (a blockwise graph: cheap to slice and cull)."""
    import dask.array as da

    return da.map_blocks(
        _normal_block,
        chunks=da.core.normalize_chunks(chunks, shape),
        dtype=np.float32,
        meta=np.empty((0,) * len(shape), np.float32),
        seed=seed,
        loc=loc,
        scale=scale,
    )


def synthetic_fields(cfg: DataBenchmarkConfig, seed: int = 0) -> xr.Dataset:
    """A lazily generated global dataset (seeded noise, one chunk per time step)."""
    shape, chunks = (cfg.n_time, cfg.n_lat, cfg.n_lon), (1, cfg.n_lat, cfg.n_lon)
    data = {}
    for i, name in enumerate(cfg.variables):
        loc = 280.0 if i == 0 else 0.0
        values = lazy_noise(shape, chunks, seed + i, loc, 3.0)
        info = KNOWN_VARIABLES.get(name)
        data[name] = ((TIME, LAT, LON), values, {"units": info.units if info else "1"})
    return xr.Dataset(
        data,
        coords={
            TIME: pd.date_range("2000-01-01", periods=cfg.n_time, freq="6h"),
            LAT: (LAT, np.linspace(-90.0, 90.0, cfg.n_lat), dict(COORD_ATTRS[LAT])),
            LON: (LON, -180.0 + np.arange(cfg.n_lon) * (360.0 / cfg.n_lon), dict(COORD_ATTRS[LON])),
        },
    )


def synthetic_ensemble(cfg: DataBenchmarkConfig, seed: int = 100) -> xr.Dataset:
    """A lazily generated ensemble (member, time, lat, lon), one chunk per time step."""
    shape = (cfg.ens_members, cfg.ens_time, cfg.n_lat, cfg.n_lon)
    values = lazy_noise(shape, (cfg.ens_members, 1, cfg.n_lat, cfg.n_lon), seed, 280.0, 3.0)
    return xr.Dataset(
        {"t2m": ((MEMBER, TIME, LAT, LON), values, {"units": "K"})},
        coords={
            MEMBER: np.arange(cfg.ens_members),
            TIME: pd.date_range("2000-01-01", periods=cfg.ens_time, freq="6h"),
            LAT: np.linspace(-90.0, 90.0, cfg.n_lat),
            LON: -180.0 + np.arange(cfg.n_lon) * (360.0 / cfg.n_lon),
        },
    )


def uk_t2m_path(path: Path | None = None) -> Path | None:
    """The UK t2m file: ``path`` when given, else the shipped ``uk_t2m`` dataset
    (:mod:`hdm.domains.shipped`: ``$HDM_DATA_DIR`` or the repository's ``data/``); None
    when it is not there."""
    if path is not None:
        return Path(path) if Path(path).exists() else None
    try:
        return GRIDDED_DATASETS["uk_t2m"].resolved_path()
    except ShippedDataError:
        return None


# ------------------------------------------------------------------ measure


def bench_stream(cfg: DataBenchmarkConfig) -> dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader

    with PeakRSS() as mem:
        ds = normalise_conventions(synthetic_fields(cfg), "synthetic")
        nbytes = sum(v.nbytes for v in ds.data_vars.values())
        t0 = time.perf_counter()
        train = slice(ds[TIME].values[0], ds[TIME].values[cfg.fit_steps - 1])
        norm = FieldNormaliser.fit(ds, time=train)
        t_fit = time.perf_counter() - t0
        fd = FieldDataset(ds, normaliser=norm)
        loader = DataLoader(
            fd,
            batch_size=cfg.batch_size,
            shuffle=True,
            num_workers=cfg.num_workers,
            generator=torch.Generator().manual_seed(0),
        )
        t0 = time.perf_counter()
        n, finite = 0, True
        for batch in loader:
            finite &= bool(batch.isfinite().all())
            n += 1
            if n == cfg.batches:
                break
        t_stream = time.perf_counter() - t0
    return {
        "nbytes": nbytes,
        "shape": (len(cfg.variables), cfg.n_time, cfg.n_lat, cfg.n_lon),
        "fit_s": t_fit,
        "stream_s": t_stream,
        "batches": n,
        "batches_per_s": n / t_stream,
        "mb_per_s": n
        * cfg.batch_size
        * len(cfg.variables)
        * cfg.n_lat
        * cfg.n_lon
        * 4
        / 1e6
        / t_stream,
        "finite": finite,
        "peak_rss": mem.peak,
        "peak_total": mem.peak_total,
        "peak_rss_sum": mem.peak_rss_sum,
        "rss_method": mem.method,
    }


def bench_store(cfg: DataBenchmarkConfig, work_dir: Path) -> dict[str, Any]:
    ens = synthetic_ensemble(cfg)
    store = work_dir / "bench_ensemble.zarr"
    if store.exists():
        shutil.rmtree(store)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        report = write_zarr_ensemble(
            ens, store, {TIME: cfg.ens_time_chunk, MEMBER: cfg.ens_members}, mode="w"
        )
        elapsed = time.perf_counter() - t0
    on_disk = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    shutil.rmtree(store)
    return {
        "nbytes": ens.t2m.nbytes,
        "shape": ens.t2m.shape,
        "chunks": report.n_chunks,
        "seconds": elapsed,
        "mb_per_s": ens.t2m.nbytes / 1e6 / elapsed,
        "on_disk": on_disk,
        "peak_rss": mem.peak,
    }


def bench_uk(cfg: DataBenchmarkConfig, path: Path) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    def loader_path() -> int:
        ds = open_fields(path, "t2m", chunks={TIME: 24})
        fd = FieldDataset(ds, normaliser=norm)
        return sum(b.shape[0] for b in DataLoader(fd, batch_size=cfg.uk_batch_size))

    norm_t0 = time.perf_counter()
    norm = FieldNormaliser.fit(open_fields(path, "t2m"), time=slice("2019-03-01", "2019-03-21"))
    fit_s = time.perf_counter() - norm_t0
    plain, ours = [], []
    with PeakRSS() as mem:
        for _ in range(cfg.repeats):
            t0 = time.perf_counter()
            with xr.open_dataset(path) as raw:
                values = raw["t2m"].values
            plain.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            n = loader_path()
            ours.append(time.perf_counter() - t0)
    return {
        "shape": values.shape,
        "steps": n,
        "plain_s": min(plain),
        "loader_s": min(ours),
        "ratio": min(ours) / min(plain),
        "fit_s": fit_s,
        "peak_rss": mem.peak,
    }


# -------------------------------------------------------------------- report


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _stream_row(s: dict[str, Any], cfg: DataBenchmarkConfig, ok) -> str:
    workers = (
        f"; {_gib(s['peak_total'])} Σ PSS with {cfg.num_workers} workers "
        f"(Σ RSS {_gib(s['peak_rss_sum'])})"
        if cfg.num_workers
        else ""
    )
    return (
        f"| stream synthetic fields through `FieldDataset` | "
        f"{' × '.join(map(str, s['shape']))} float32 = {_gb(s['nbytes'])}, lazy dask "
        f"(never materialised) | normaliser fitted on {cfg.fit_steps} steps "
        f"({s['fit_s']:.1f} s); {s['batches']} shuffled batches of {cfg.batch_size}, "
        f"{cfg.num_workers} workers | {s['stream_s']:.1f} s | "
        f"{s['batches_per_s']:.2f} batches/s ({s['mb_per_s']:.3g} MB/s) | "
        f"{_gib(s['peak_rss'])} main{workers}{ok(max(s['peak_rss'], s['peak_total']))} |"
    )


def _store_row(z: dict[str, Any], cfg: DataBenchmarkConfig, ok) -> str:
    return (
        f"| write ensemble store (`write_zarr_ensemble`) | "
        f"{' × '.join(map(str, z['shape']))} float32 = {_gb(z['nbytes'])} "
        f"({_gb(z['on_disk'])} on disk) | {z['chunks']} time-chunk regions, "
        f"{cfg.ens_members} members per chunk | {z['seconds']:.1f} s | "
        f"{z['mb_per_s']:.3g} MB/s | {_gib(z['peak_rss'])}{ok(z['peak_rss'])} |"
    )


def _uk_rows(u: dict[str, Any] | None, cfg: DataBenchmarkConfig) -> list[str]:
    if u is None:
        return ["| ERA5 UK t2m | not found (set HDM_DATA_DIR or pass a path) | | | | |"]
    shape = " × ".join(map(str, u["shape"]))
    return [
        (
            f"| ERA5 UK t2m, loader path | {shape} float32 (real) | `open_fields` → "
            f"`FieldNormaliser` (fit {u['fit_s']:.2f} s, once) → `FieldDataset` → "
            f"`DataLoader(batch_size={cfg.uk_batch_size})`, all {u['steps']} steps | "
            f"{u['loader_s']:.3f} s | {u['steps'] / u['loader_s']:.0f} steps/s | "
            f"{_gib(u['peak_rss'])} |"
        ),
        (
            f"| ERA5 UK t2m, plain `xr.open_dataset(path).t2m.values` | {shape} | one "
            f"read | {u['plain_s']:.3f} s | {u['steps'] / u['plain_s']:.0f} steps/s | |"
        ),
        f"| ratio loader / plain | | | **{u['ratio']:.1f} ×** | | |",
    ]


def format_table(results: dict[str, Any], cfg: DataBenchmarkConfig, quick: bool) -> str:
    """The ``data`` section's heading, table and notes (the command, machine and date are
    added by :func:`benchmarks.report.write_section`)."""
    s = results["stream"]
    label = " (--quick: tiny sizes, a smoke run, not the scale result)" if quick else ""
    limit = 2 * 10**9
    ok = lambda peak: "" if quick else (" ✓ ≤ 2 GB" if peak <= limit else " ✗ > 2 GB")  # noqa: E731
    lines = [
        f"## Data layer{label}",
        "",
        "| case | data | work | time | throughput | peak RSS |",
        "|---|---|---|---|---|---|",
        _stream_row(s, cfg, ok),
        _store_row(results["store"], cfg, ok),
        *_uk_rows(results.get("uk"), cfg),
        "",
        f"Peak RSS of the main process: {s['rss_method']} (kernel high-water mark, reset "
        "per row) or sampled; with workers, the sampled peak of Σ PSS (shared pages "
        "counted once) and of Σ RSS (shared pages counted in each process: an upper "
        f"bound) over the process and its workers. UK times: best of {cfg.repeats}.",
    ]
    return "\n".join(lines)


def run_data_benchmark(
    quick: bool,
    benchmarks_file: Path,
    *,
    work_dir: Path | None = None,
    uk_path: Path | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run the data benchmark and write its section of ``benchmarks_file``.

    Args:
        quick: tiny sizes (a smoke run, seconds) instead of the ≥ 20 GB / 5 GB run.
        benchmarks_file: the BENCHMARKS.md to update (only the ``data`` section).
        work_dir: where the zarr store is written (and removed); default a temp dir.
        uk_path: the ERA5 UK t2m netCDF (default: see :func:`uk_t2m_path`).
        command: the command line to record (default: this process's).

    Returns:
        the measurements, as a dict (also logged).
    """
    cfg = QUICK if quick else FULL
    results: dict[str, Any] = {"machine": machine_description(*PACKAGES)}
    log.info("data benchmark: streaming %s", "(quick)" if quick else "")
    results["stream"] = bench_stream(cfg)
    log.info("data benchmark: zarr ensemble store")
    own_tmp = work_dir is None
    wd = Path(tempfile.mkdtemp(prefix="hdm-bench-")) if own_tmp else Path(work_dir)
    wd.mkdir(parents=True, exist_ok=True)
    try:
        results["store"] = bench_store(cfg, wd)
    finally:
        if own_tmp:
            shutil.rmtree(wd, ignore_errors=True)
    path = uk_t2m_path(uk_path)
    if path is not None:
        log.info("data benchmark: UK t2m from %s", path)
        results["uk"] = bench_uk(cfg, path)
    else:
        log.warning("data benchmark: UK t2m file not found; row skipped")
    write_section(
        benchmarks_file,
        SECTION,
        format_table(results, cfg, quick),
        command=command,
        machine=results["machine"],
    )
    log.info("data benchmark: %s", results)
    return results


def main(argv: Sequence[str] = ()) -> dict[str, Any]:
    """``python -m benchmarks data [--quick] [--work-dir DIR] [--uk-path FILE]``."""
    p = parser("data", __doc__, quick="tiny sizes, a smoke run (seconds)")
    p.add_argument("--work-dir", type=Path, default=None, help="for the zarr store")
    p.add_argument("--uk-path", type=Path, default=None, help="the ERA5 UK t2m netCDF")
    args = p.parse_args(list(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results = run_data_benchmark(
        args.quick,
        args.benchmarks_file,
        work_dir=args.work_dir,
        uk_path=args.uk_path,
        command=command_line("data", argv),
    )
    print(f"benchmark table written to {args.benchmarks_file}")
    return results
