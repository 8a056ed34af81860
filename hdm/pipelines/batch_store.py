"""The store of a batch run: created once, written region by region, resumable.

A batch store is a zarr group holding every output variable (created empty with its
coordinates and metadata before any chunk runs), the resolved config (root attribute
``hdm_config``), a manifest (``hdm_manifest``: the fingerprint of what decides the
values, the chunk layout, the run ids and the chunks completed; written by the driver
only) and one completion marker per finished chunk: a small group
``hdm_chunks/cNNNNNN`` whose attributes name the chunk, its times and the run id. A
marker is written only after its region, and no two tasks write the same file, so a
store killed at any point is resumed by running the chunks without a marker.
"""

from __future__ import annotations

import errno
import glob
import json
import logging
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
import yaml
import zarr

from hdm.data.schema import TIME
from hdm.data.stores import (
    cf_output,
    consolidate,
    open_store,
    read_manifest,
    write_manifest,
    write_netcdf_cf,
    zarr_extensions,
)
from hdm.downscaling.core import noise_settings
from hdm.downscaling.inputs import coarse_channel_names, stations_by_variable
from hdm.downscaling.output import attach_inputs, ensemble_dataset, provenance_attrs
from hdm.downscaling.prior import Prior, target_grid
from hdm.pipelines.config import DownscaleRunConfig, config_dict

log = logging.getLogger("hdm")

__all__ = [
    "CONFIG_KEY",
    "MARKERS",
    "StoreConflict",
    "check_writable",
    "check_writable_folder",
    "config_differences",
    "create_store",
    "fingerprint",
    "finish_store",
    "open_for_run",
    "read_markers",
    "remove_stale_creations",
    "write_marker",
]

CONFIG_KEY = "hdm_config"
MARKERS = "hdm_chunks"


class StoreConflict(FileExistsError):
    """The output store exists and may not be touched without ``--resume``/``--overwrite``."""


def fingerprint(cfg: DownscaleRunConfig, prior: Prior, times: np.ndarray) -> dict:
    """What decides the store's values and layout: compared before a store is resumed."""
    sampling = cfg.sampling_dict()
    sampling["checkpoint"] = prior.sha256
    return {
        "sampling": sampling,
        "chunk_size": cfg.batch.chunk_size,
        "times": [str(t)[:19] for t in np.asarray(times, dtype="datetime64[s]")],
    }


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The keys (dotted, with old -> new values) where two config fingerprints differ."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        where = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, where + ".")
        elif a != b:
            if key == "times":
                a, b = _times_summary(a), _times_summary(b)
            out.append(f"{where}: {a!r} -> {b!r}")
    return out


def _times_summary(times) -> str:
    """'N times, FIRST..LAST': enough to tell two lists of times apart in one line (two
    runs of as many times at other hours differ in their ends)."""
    times = list(times or [])
    if not times:
        return "0 times"
    ends = str(times[0]) if len(times) == 1 else f"{times[0]}..{times[-1]}"
    return f"{len(times)} times, {ends}"


def check_writable(out: Path) -> None:
    """Fail before any work when the output's directory cannot be written."""
    check_writable_folder(
        out.parent, f"the output {out}: its directory {out.parent} is not writable"
    )


def check_writable_folder(folder: Path, what: str) -> None:
    """Make ``folder`` and write a probe file in it; a PermissionError "cannot write
    {what} (the system's reason)" where either fails."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".hdm-write-probe-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PermissionError(f"cannot write {what} ({exc.strerror or exc})") from None


def read_markers(store: str | Path) -> dict[int, dict]:
    """Completion markers of a batch store: chunk index → its attributes. An unreadable
    marker (a task killed while writing it) counts as not done."""
    root = Path(store) / MARKERS
    done = {}
    if not root.is_dir():
        return done
    for child in sorted(root.iterdir()):
        meta = child / "zarr.json"
        if not (child.name.startswith("c") and meta.is_file()):
            continue
        try:
            attrs = json.loads(meta.read_text())["attributes"]
            done[int(attrs["chunk"])] = attrs
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring the unreadable chunk marker %s", child)
    return done


def write_marker(store: str | Path, index: int, attributes: dict) -> None:
    """The completion marker of chunk ``index`` (written after the chunk's region)."""
    zarr.open_group(f"{store}/{MARKERS}/c{index:06d}", mode="w", attributes=attributes)


def create_store(
    store: Path,
    cfg: DownscaleRunConfig,
    prior: Prior,
    times: np.ndarray,
    coarse: dict[str, xr.DataArray],
    stations: xr.Dataset | None,
    manifest: dict,
    extra_attrs: dict | None = None,
) -> None:
    """Metadata (the CF attributes of :func:`hdm.data.stores.cf_output`), coordinates,
    static variables and the manifest, consolidated; no time is computed."""
    ens = cfg.ensemble
    grid = target_grid(prior, ens.scale if ens.scale != 1 else None)
    shape = (ens.members, len(times), len(prior.channels), *grid.shape)
    empty = da.zeros(shape, dtype=np.float32, chunks=(shape[0], 1, 1, *grid.shape))
    template = ensemble_dataset(empty, prior, grid, times, ens.quantiles)
    template = attach_inputs(
        template, {v: f.chunk({TIME: 1}) for v, f in coarse.items()}, stations, ens.time_tolerance
    )
    ids = sorted(set(stations["id"].values.astype(str))) if stations is not None else []
    coarse_noise, station_noise = noise_settings(prior, ens)
    observed = set(stations_by_variable(stations, prior)) if stations is not None else set()
    template.attrs.update(
        provenance_attrs(
            prior,
            grid,
            ens,
            coarse_noise={name: coarse_noise[name] for name in coarse_channel_names(prior, coarse)},
            station_noise={v: station_noise[v] for v in prior.variables if v in observed},
            station_ids=ids,
        )
    )
    config = yaml.safe_dump(config_dict(cfg), sort_keys=False)
    template.attrs.update({**(extra_attrs or {}), CONFIG_KEY: config})
    # the provenance's config is written as hdm_config, the same YAML as CONFIG_KEY
    provenance = {"checkpoint_hash": prior.sha256, "config": config, "seed": ens.seed}
    template = cf_output(template, provenance, history=f"hdm downscale ({cfg.name})")
    with zarr_extensions():  # the station ids: fixed-length strings, fine in zarr-python
        template.to_zarr(store, mode="w", compute=False, consolidated=False)
    zarr.open_group(str(store), mode="r+").create_group(MARKERS)
    write_manifest(store, manifest)
    consolidate(store)


def open_for_run(
    store: Path, fp: dict, n_chunks: int, *, resume: bool, overwrite: bool
) -> dict | None:
    """Check an existing store against this run; returns its manifest (None: no store,
    or one removed by ``overwrite``).

    Raises:
        StoreConflict: a store that is not hdm's, was written with another config (the
            keys that differ are named), or exists without ``resume``.
    """
    if not store.exists():
        return None
    manifest = read_manifest(store)
    if overwrite:
        shutil.rmtree(store)
        return None
    if manifest is None:
        raise StoreConflict(
            f"{store} exists but is not an hdm batch store (no manifest); pass --overwrite "
            "to replace it"
        )
    if manifest["fingerprint"] != fp:
        diff = "; ".join(config_differences(manifest["fingerprint"], fp)[:6])
        raise StoreConflict(
            f"{store} was written with a different config ({diff}); pass --overwrite to "
            "replace it, or write to another --out"
        )
    if not resume:
        n_done = len(read_markers(store))
        raise StoreConflict(
            f"{store} exists ({n_done} of {n_chunks} chunks done, same config); pass "
            "--resume to complete it or --overwrite to replace it"
        )
    return manifest


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_creations(store: Path) -> list[Path]:
    """Remove the temporary folders ``.<store>.creating-PID`` that runs killed while
    creating ``store`` left (their process is gone); returns them. A folder of a process
    still running on this machine is left to it."""
    removed = []
    for tmp in store.parent.glob(f".{glob.escape(store.name)}.creating-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def create_atomically(store: Path, *args, **kwargs) -> None:
    """:func:`create_store` into a temporary folder renamed into place: a store with a
    manifest is whole, or absent. The temporary folder goes on any error, and those of
    killed runs (:func:`remove_stale_creations`) before it is made; a store another run
    put in place meanwhile is a :class:`StoreConflict`, not an OS error."""
    remove_stale_creations(store)
    tmp = store.with_name(f".{store.name}.creating-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        create_store(tmp, *args, **kwargs)
        os.replace(tmp, store)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if store.exists() and exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR):
            raise StoreConflict(
                f"another run created {store} while this one was creating it: run again "
                "(it resumes that store) or write to another --out"
            ) from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def finish_store(store: Path, markers: dict[int, dict], manifest: dict) -> None:
    """Mark the manifest complete and record the runs that wrote the store, their NFE and
    task time in its root attributes; consolidate its metadata (the markers included)."""
    manifest["complete"] = sorted(markers)
    manifest["status"] = "complete"
    manifest["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_manifest(store, manifest)
    with zarr_extensions():  # the root's metadata hold the consolidated ones
        attrs = zarr.open_group(str(store), mode="r+").attrs
        attrs.update(
            {
                "run_ids": ",".join(manifest["runs"]),
                "nfe_per_member": int(next(iter(markers.values()))["nfe_per_member"]),
                "task_time_s": round(sum(m["wall_time_s"] for m in markers.values()), 3),
                "created": manifest["finished"],
            }
        )
    consolidate(store)


def write_netcdf_output(store: Path, out: Path, prior: Prior, cfg: DownscaleRunConfig) -> None:
    """The finished work store as CF netCDF ``out`` (atomically), then the store removed."""
    ds = open_store(store)
    ds.attrs.pop(CONFIG_KEY, None)
    if out.exists():
        out.unlink()
    provenance = {
        "checkpoint_hash": prior.sha256,
        "config": config_dict(cfg),
        "seed": cfg.ensemble.seed,
    }
    write_netcdf_cf(ds, out, provenance)
    shutil.rmtree(store)
