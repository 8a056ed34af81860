"""Stores: resumable zarr ensembles and CF-compliant netCDF, and reading either back.

CF attributes (:func:`cf_output`). Every store hdm writes, zarr or netCDF, carries the
same CF-1.8 attributes, made by this one function: ``units``, ``long_name`` and
``standard_name`` of each variable where known (:data:`hdm.data.schema.KNOWN_VARIABLES`);
the schema's coordinates with exactly their CF attributes (``time`` the valid time,
``axis`` T; ``lat``/``lon`` with ``axis`` Y/X and cell edges in ``{name}_bounds``;
``member`` with ``standard_name: realization``); no ``GRIB_*`` or other input attribute
that describes the source rather than the output; and the global ``Conventions =
"CF-1.8"``, ``history`` (a line per write appended to any earlier history), ``source``
and the provenance: ``hdm_version`` and one ``hdm_<key>`` attribute per provenance
entry (``checkpoint_hash``, ``config``, ``seed`` are required; dicts and lists are
stored as JSON). The ``cell_methods`` of the ensemble summaries are set where they are
computed (:func:`hdm.downscaling.output.summarise`).

Zarr ensembles (:func:`write_zarr_ensemble`). The store is laid out by time chunks of
``k`` steps and member chunks of ``m`` members (the zarr chunks are (m, k, [level,]
lat, lon), whole in the other dims). Writing goes *region by region*: time chunk q
(steps qk … qk+k−1) is computed and written on its own (``to_zarr(region=...)``), so
memory is bounded by one region's dask chunks in flight, never the whole array, and
chunks are independent tasks. A manifest in the store's root attributes
(``hdm_manifest``, a JSON string) records the layout, a fingerprint of the dataset
(variables, dims, sizes, dtypes, time coordinate) and the list of completed time
chunks; a chunk is marked complete only after its write returned. A rerun with the
same dataset skips the completed chunks and writes the rest, so an interrupted run
loses at most the chunks in flight; a rerun with a different dataset is refused
(``mode="w"`` starts afresh). The manifest is updated by the calling process only, so
there is no concurrent writer of the root metadata. The zarr metadata are consolidated
(:func:`consolidate`) when the store is created and when its last chunk is written, so
``xr.open_zarr`` opens it without a warning, finished or not.

CF netCDF (:func:`write_netcdf_cf`): the attributes of :func:`cf_output`; xarray writes
the ``coordinates`` attribute of each variable (its non-dimension coordinates). The
file is written to a temporary name in the same directory and renamed into place, so a
failure leaves nothing behind.

:func:`open_store` opens either kind lazily (dask), without the internal manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cf_xarray  # noqa: F401  (the .cf accessor: cell edges from centres)
import numpy as np
import xarray as xr

from hdm._version import __version__
from hdm.data.open import detect_format
from hdm.data.schema import COORD_ATTRS, KNOWN_VARIABLES, MEMBER, TIME

__all__ = [
    "REQUIRED_PROVENANCE",
    "ZarrWriteReport",
    "cf_output",
    "consolidate",
    "open_store",
    "read_manifest",
    "write_manifest",
    "write_netcdf_cf",
    "write_zarr_ensemble",
    "zarr_extensions",
]

log = logging.getLogger("hdm")

MANIFEST_KEY = "hdm_manifest"
REQUIRED_PROVENANCE = ("checkpoint_hash", "config", "seed")


@dataclass(frozen=True)
class ZarrWriteReport:
    """What :func:`write_zarr_ensemble` did: time-chunk indices written and skipped."""

    store: str
    n_chunks: int
    written: tuple[int, ...]
    skipped: tuple[int, ...]


# -------------------------------------------------------------------- CF output

#: attribute keys that describe an input, never an output: cfgrib's ``GRIB_*`` keys (on
#: a coarse field they still say ``GRIB_Nx=49``, the fine grid's width) and its
#: ``stored_direction`` (hdm sorts every axis ascending when it opens a file)
STALE_PREFIXES = ("GRIB_",)
STALE_KEYS = frozenset({"stored_direction"})

#: attributes of a schema coordinate that describe its values, kept when the CF
#: attributes replace the rest (a numeric time axis keeps its units and calendar)
_KEPT_COORD_KEYS = ("units", "calendar", "bounds")

#: the schema's ``time`` is the valid time (a cfgrib input calls its time axis
#: "forecast_reference_time", which an analysis field and a downscaled one are not)
_CF_COORDS = {**COORD_ATTRS, TIME: {**COORD_ATTRS[TIME], "long_name": "valid time"}}

#: the standard names of the horizontal axes that get cell edges (``bounds``)
_HORIZONTAL = ("latitude", "longitude")


def _fresh_attrs(attrs: Mapping[Any, Any]) -> dict[Any, Any]:
    """``attrs`` without what describes an input: ``GRIB_*`` and ``stored_direction``
    keys, and cfgrib's placeholder ``standard_name = "unknown"``."""
    return {
        key: value
        for key, value in attrs.items()
        if not str(key).startswith(STALE_PREFIXES)
        and key not in STALE_KEYS
        and not (key == "standard_name" and value == "unknown")
    }


def _coordinate_attrs(ds: xr.Dataset) -> xr.Dataset:
    """The schema's coordinates (``time``, ``lat``, ``lon``, ``level``, ``member``,
    ``sample``) get exactly their CF attributes (:data:`_CF_COORDS`, keeping units,
    calendar and bounds); every other variable loses the stale input attributes."""
    for name, var in ds.variables.items():
        attrs = _fresh_attrs(var.attrs)
        canonical = _CF_COORDS.get(str(name)) if name in ds.coords else None
        if canonical is not None:
            kept = {k: attrs[k] for k in _KEPT_COORD_KEYS if k in attrs}
            attrs = {**kept, **canonical}
        var.attrs = attrs
    return ds


def _with_bounds(ds: xr.Dataset) -> xr.Dataset:
    """Cell edges of every latitude/longitude dimension coordinate with ≥ 2 points:
    ``{name}_bounds(name, bounds)``, the midpoints between centres and, at either end,
    the centre ∓ half the next spacing (cf_xarray's ``add_bounds``), latitudes clipped
    to [−90, 90]. A coordinate whose ``bounds`` already name a variable keeps them."""
    missing, have = [], []
    for name in ds.dims:
        var = ds.variables.get(name)
        if var is None or var.attrs.get("standard_name") not in _HORIZONTAL or var.size < 2:
            continue
        target = var.attrs.get("bounds") or var.encoding.get("bounds")
        if target in ds.variables:
            var.attrs["bounds"] = target
            have.append(target)
        else:
            var.attrs.pop("bounds", None)
            missing.append(str(name))
    if missing:
        ds = ds.cf.add_bounds(missing, output_dim="bounds")
        for name in missing:
            if ds[name].attrs["standard_name"] == "latitude":  # the end cells stop at a pole
                ds = ds.assign_coords({f"{name}_bounds": ds[f"{name}_bounds"].clip(-90, 90)})
    return ds.set_coords([b for b in have if b in ds.data_vars])


def _variable_attrs(ds: xr.Dataset) -> xr.Dataset:
    """Data variables get ``units``, ``long_name`` and ``standard_name`` where known
    (:data:`hdm.data.schema.KNOWN_VARIABLES`) and missing, and a ``long_name`` always."""
    for name, var in ds.data_vars.items():
        attrs = dict(var.attrs)
        info = KNOWN_VARIABLES.get(str(name))
        if info is not None:
            attrs.setdefault("units", info.units)
            attrs.setdefault("long_name", info.long_name)
            if info.standard_name:
                attrs.setdefault("standard_name", info.standard_name)
        attrs.setdefault("long_name", str(name))
        var.attrs = attrs
    return ds


def _attr_value(value: Any) -> Any:
    """A netCDF-writable attribute: numbers, strings and numeric arrays as they are,
    booleans as 0/1, anything else (dicts, mixed lists, None) as JSON text."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value)
        if arr.ndim == 1 and arr.size and arr.dtype.kind in "iuf":
            return arr
    return json.dumps(value, sort_keys=True, default=str)


def _check_provenance(provenance: Mapping[str, Any]) -> None:
    missing = [k for k in REQUIRED_PROVENANCE if k not in provenance]
    if missing:
        raise ValueError(
            f"provenance lacks {missing}; required: {list(REQUIRED_PROVENANCE)}, "
            f"got {sorted(provenance)}"
        )


def cf_output(
    ds: xr.Dataset,
    provenance: Mapping[str, Any] | None = None,
    *,
    history: str = f"written by hdm {__version__}",
) -> xr.Dataset:
    """A copy of ``ds`` with the CF-1.8 attributes every hdm output carries, in zarr and
    netCDF alike (the input is left untouched).

    * Coordinates: ``time`` (``standard_name: time``, ``long_name: valid time``,
      ``axis: T``), ``lat``/``lon`` (``degrees_north``/``degrees_east``, ``axis`` Y/X),
      ``level`` (hPa, ``positive: down``), ``member`` (``standard_name: realization``)
      replace whatever the input had (a cfgrib "forecast_reference_time" included);
      every latitude/longitude dimension coordinate (the coarse grid's too) gets a
      ``bounds`` variable of cell edges (:func:`_with_bounds`).
    * Variables: ``units``, ``long_name``, ``standard_name`` where known and missing;
      ``cell_methods`` are those set where the summaries are computed
      (:func:`hdm.downscaling.output.summarise`); no ``GRIB_*`` or ``stored_direction``
      attribute copied from an input survives.
    * Global: ``Conventions = "CF-1.8"``; ``history`` gains the line
      ``"<UTC time>: <history>"`` after any earlier lines; ``source`` (default
      ``"hdm <version>"``); ``hdm_version``; one ``hdm_<key>`` per provenance entry
      (``checkpoint_hash``, ``config``, ``seed`` required when a provenance is given).
      Booleans become 0/1 and dicts, mixed lists and None JSON text, so that zarr and
      netCDF hold the same values.

    Raises:
        ValueError: a provenance without a required key.
    """
    if provenance is not None:
        _check_provenance(provenance)
    ds = ds.copy()
    ds = _with_bounds(_coordinate_attrs(ds))
    ds = _variable_attrs(ds)
    attrs = _fresh_attrs(ds.attrs)
    attrs.pop(MANIFEST_KEY, None)  # a store's own bookkeeping, written by its writer
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    previous = attrs.get("history")
    attrs["history"] = f"{previous}\n{now}: {history}" if previous else f"{now}: {history}"
    attrs["Conventions"] = "CF-1.8"
    attrs.setdefault("source", f"hdm {__version__}")
    attrs["hdm_version"] = __version__
    for key, value in (provenance or {}).items():
        attrs[f"hdm_{key}"] = value
    ds.attrs = attrs
    for obj in (ds, *ds.variables.values()):
        obj.attrs = {key: _attr_value(value) for key, value in obj.attrs.items()}
    return ds


@contextmanager
def zarr_extensions() -> Iterator[None]:
    """Silence zarr-python's warnings that consolidated metadata and fixed-width strings
    (the station ids) are zarr v3 extensions: it gives them whenever it writes metadata
    that hold them (the root's, once consolidated, at every attribute update), and
    hdm's stores are read by zarr-python, which reads both."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not")
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification")
        yield


def consolidate(store: str | os.PathLike[str]) -> None:
    """Consolidate the zarr metadata of ``store`` (the root's ``zarr.json`` lists every
    array's metadata), so that ``xr.open_zarr(store)`` reads it at once, without the
    warning of a store without consolidated metadata. Updating the root's attributes
    later keeps it; a store's arrays are created before it, never after."""
    import zarr

    with zarr_extensions():
        zarr.consolidate_metadata(str(store))


# ------------------------------------------------------------------------- zarr


def _fingerprint(ds: xr.Dataset) -> str:
    h = hashlib.sha256()
    for name in sorted(map(str, ds.data_vars)):
        var = ds[name]
        h.update(f"{name}|{var.dims}|{var.shape}|{var.dtype}".encode())
    if TIME in ds.coords:
        h.update(np.ascontiguousarray(ds[TIME].values).tobytes())
    return h.hexdigest()[:16]


def read_manifest(store: str | os.PathLike[str]) -> dict[str, Any] | None:
    import zarr

    try:
        group = zarr.open_group(str(store), mode="r")
    except (FileNotFoundError, ValueError, KeyError, zarr.errors.GroupNotFoundError):
        return None
    raw = group.attrs.get(MANIFEST_KEY)
    return json.loads(raw) if isinstance(raw, str) else None


def write_manifest(store: str | os.PathLike[str], manifest: Mapping[str, Any]) -> None:
    import zarr

    with zarr_extensions():
        group = zarr.open_group(str(store), mode="r+")
        group.attrs[MANIFEST_KEY] = json.dumps(manifest, sort_keys=True)


def _zarr_encoding(ds: xr.Dataset, chunks: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    enc = {}
    for name, var in ds.data_vars.items():
        enc[name] = {"chunks": tuple(int(chunks.get(d, s)) for d, s in zip(var.dims, var.shape))}
    return enc


def _ensemble_chunks(ds: xr.Dataset, chunks: Mapping[str, int] | None, mode: str) -> dict[str, int]:
    """The zarr chunk sizes of :func:`write_zarr_ensemble`: ``chunks`` with ``time`` 1
    and ``member`` whole by default, after checking ``mode``, the ``time`` dim and that
    every size is ≥ 1 along a dim of ``ds``."""
    if mode not in ("resume", "w"):
        raise ValueError(f"mode must be 'resume' or 'w', got {mode!r}")
    if TIME not in ds.dims:
        raise ValueError(f"write_zarr_ensemble needs a {TIME!r} dimension; dims: {dict(ds.sizes)}")
    chunks = dict(chunks or {})
    chunks.setdefault(TIME, 1)
    if MEMBER in ds.dims:
        chunks.setdefault(MEMBER, ds.sizes[MEMBER])
    for dim, size in chunks.items():
        if dim not in ds.dims or int(size) < 1:
            raise ValueError(f"chunk {dim}={size}: dims are {dict(ds.sizes)}, sizes must be >= 1")
    return chunks


def _chunked_for_regions(ds: xr.Dataset, chunks: Mapping[str, int]) -> tuple[xr.Dataset, list[str]]:
    """``ds`` ready to be written region by region, and the names of its timed variables.

    Coordinates and data variables without time are small and written with the
    metadata (loaded here); data variables with time are dask, chunked so that each
    dask chunk maps onto whole zarr chunks, and written region by region.
    """
    ds = ds.drop_encoding()
    static = [n for n, v in ds.data_vars.items() if TIME not in v.dims]
    ds = ds.assign({n: ds[n].load() for n in static})
    ds = ds.assign_coords({n: ds[n].variable.load() for n in ds.coords})
    timed = [n for n, v in ds.data_vars.items() if TIME in v.dims]
    ds = ds.assign({n: ds[n].chunk({d: int(chunks.get(d, -1)) for d in ds[n].dims}) for n in timed})
    return ds, timed


def _start_or_resume(
    ds: xr.Dataset,
    path: Path,
    chunks: Mapping[str, int],
    mode: str,
    fingerprint: str,
    layout: dict[str, Any],
) -> dict[str, Any]:
    """The store's manifest: read back when resuming a store of the same dataset and
    layout, else (new store, or ``mode="w"``) the metadata, coordinates and empty arrays
    are written and a manifest with no complete chunk. A store of another dataset or
    layout, or one without a manifest, is refused when resuming."""
    manifest = read_manifest(path) if (mode == "resume" and path.exists()) else None
    if manifest is not None and (
        manifest.get("fingerprint") != fingerprint or manifest.get("layout") != layout
    ):
        raise ValueError(
            f"the zarr store {path} was written for a different dataset or layout "
            f"(manifest {manifest.get('fingerprint')}, {manifest.get('layout')}; this dataset "
            f"{fingerprint}, {layout}); use mode='w' to overwrite it"
        )
    if manifest is None:
        if path.exists() and mode == "resume":
            raise ValueError(f"{path} exists but has no hdm manifest; use mode='w' to overwrite it")
        # Metadata, coordinates and empty arrays; no data variable is computed here.
        with zarr_extensions():
            encoding = _zarr_encoding(ds, chunks)
            ds.to_zarr(path, mode="w", compute=False, consolidated=False, encoding=encoding)
        manifest = {"fingerprint": fingerprint, "layout": layout, "complete": []}
        write_manifest(path, manifest)
        consolidate(path)
    return manifest


def write_zarr_ensemble(
    ds: xr.Dataset,
    store: str | os.PathLike[str],
    chunks: Mapping[str, int] | None = None,
    *,
    mode: str = "resume",
    provenance: Mapping[str, Any] | None = None,
    history: str | None = None,
) -> ZarrWriteReport:
    """Write ``ds`` (dims ``[member,] time, ...``) to a zarr store, time chunk by time chunk,
    with the CF attributes of :func:`cf_output` and consolidated metadata.

    Args:
        ds: the dataset; dask-backed data is computed one region at a time.
        store: the zarr store directory.
        chunks: zarr chunk sizes, default ``{"time": 1, "member": <all>}``; other dims
            whole unless given.
        mode: ``"resume"`` (create, or complete a store written before by the same
            dataset) or ``"w"`` (overwrite).
        provenance: written as ``hdm_<key>`` attributes (as :func:`write_netcdf_cf`;
            ``checkpoint_hash``, ``config`` and ``seed`` required when given).
        history: the line to append to ``history`` (default: "written by hdm X").

    Returns:
        a :class:`ZarrWriteReport` with the time chunks written and skipped.

    Raises:
        ValueError: no ``time`` dim, a bad mode or chunk size, a provenance without a
            required key, or a store that holds a different dataset (with
            ``mode="resume"``).
    """
    chunks = _ensemble_chunks(ds, chunks, mode)
    line = history or f"written by hdm {__version__} (write_zarr_ensemble)"
    ds = cf_output(ds, provenance, history=line)
    path = Path(store)
    k = int(chunks[TIME])
    n_time = ds.sizes[TIME]
    n_chunks = -(-n_time // k)
    layout = {"chunks": {d: int(s) for d, s in chunks.items()}, "n_chunks": n_chunks}
    fingerprint = _fingerprint(ds)
    ds, timed = _chunked_for_regions(ds, chunks)
    manifest = _start_or_resume(ds, path, chunks, mode, fingerprint, layout)

    done = set(manifest["complete"])
    written, skipped = [], []
    for q in range(n_chunks):
        if q in done:
            skipped.append(q)
            continue
        region = slice(q * k, min((q + 1) * k, n_time))
        part = ds[timed].isel({TIME: region})
        part = part.drop_vars(list(part.coords))  # coordinates were written with the metadata
        part.to_zarr(path, region={TIME: region}, mode="r+", consolidated=False)
        done.add(q)
        manifest["complete"] = sorted(done)
        write_manifest(path, manifest)
        written.append(q)
        log.debug("zarr %s: time chunk %d/%d written", path, q + 1, n_chunks)
    consolidate(path)  # again: a store begun by an hdm that did not consolidate
    return ZarrWriteReport(str(path), n_chunks, tuple(written), tuple(skipped))


# ----------------------------------------------------------------------- netCDF


def write_netcdf_cf(
    ds: xr.Dataset,
    path: str | os.PathLike[str],
    provenance: Mapping[str, Any],
    *,
    history: str | None = None,
    complevel: int | None = 4,
) -> Path:
    """Write ``ds`` as CF-1.8 netCDF4 with provenance, atomically (temp file + rename).

    Args:
        ds: the dataset (dask-backed data is streamed into the file).
        path: the output file.
        provenance: at least ``checkpoint_hash``, ``config`` (dict or str) and ``seed``;
            every entry is written as a global attribute ``hdm_<key>``.
        history: the line to append to ``history`` (default: "written by hdm X").
        complevel: zlib level for floating variables (None: no compression).

    Returns:
        the path written.

    Raises:
        ValueError: a required provenance key is missing.
    """
    _check_provenance(provenance)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    line = history or f"written by hdm {__version__} (write_netcdf_cf)"
    ds = cf_output(ds, provenance, history=line).drop_encoding()
    # Coordinates and cell edges have no missing values: no _FillValue (CF 2.5.1, 7.1).
    encoding: dict[str, dict[str, Any]] = {
        str(name): {"_FillValue": None} for name, var in ds.coords.items() if var.dtype.kind == "f"
    }
    for name, var in ds.data_vars.items():
        if var.dtype.kind == "f" and complevel:
            encoding[str(name)] = {"zlib": True, "complevel": int(complevel)}
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


# ------------------------------------------------------------------------- read


def open_store(path: str | os.PathLike[str], chunks: Any = None) -> xr.Dataset:
    """Open a zarr store or a netCDF file written by this module, lazily (dask).

    Args:
        path: the store directory or the netCDF file.
        chunks: dask chunks; None uses the store's own chunks.

    Raises:
        FileNotFoundError / ValueError: as :func:`hdm.data.open.detect_format`.
    """
    p = Path(path)
    fmt = detect_format(p)
    chunks = {} if chunks is None else chunks
    if fmt == "zarr":
        with warnings.catch_warnings():  # a store of an hdm before consolidation reads fine
            warnings.filterwarnings("ignore", message=".*consolidated metadata")
            ds = xr.open_zarr(p, chunks=chunks)
    elif fmt in ("netcdf4", "netcdf3"):
        ds = xr.open_dataset(p, engine="netcdf4", chunks=chunks)
    else:
        raise ValueError(f"{p} is a {fmt} file; open_store reads zarr and netCDF only")
    ds.attrs.pop(MANIFEST_KEY, None)
    return ds
