"""The scheduled job: downscale the input files that arrived since the last run.

``hdm process-new --config CONFIG --inbox DIR --out-dir DIR`` looks at the files in
``DIR`` matching ``--pattern`` (default ``*.nc``), oldest name first, and downscales each
one whose output ``OUT-DIR/<stem>.zarr`` is not complete yet (a store left half-done by
a killed run is resumed, not restarted), with the config's settings and the file as the
input (``inputs.truth`` or ``inputs.coarse``, whichever the config uses; all its times,
every ``times.every`` hours). Meant for cron or a self-resubmitting SLURM job
(``examples/hpc/``), it answers with exit codes a scheduler understands: 0 when it
downscaled something, 3 (:data:`~hdm.pipelines.batch.EXIT_NOTHING_TO_DO`) when there was
nothing new, 1 when a file failed (the others are still done), 2 on bad input: a bad
configuration, or a file that cannot be used (unreadable, no usable times, other units
that nothing says), which is named, left in the inbox and skipped, while the files after
it are still downscaled (one bad file must not stop every later run of a cron job).

The size and modification time of the file a store is made from are recorded beside it
(``OUT-DIR/<stem>.zarr.input.json``): a file replaced under the same name (ERA5T by the
final ERA5, a rolling ``latest.nc``) is downscaled again, its store replaced through the
batch's ``--overwrite`` path (the old store stays until the new file has been read and
checked); a store made before this record counts as complete. Complete stores made with
another config are kept, with one warning naming the keys that differ. The output folder
is checked first (one line naming it, exit 2), and an error writing a store is a failed
run (exit 1), not a bad input file.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from dataclasses import replace
from pathlib import Path

from hdm.data.stores import read_manifest
from hdm.hilbert.training import plain_values
from hdm.pipelines.batch_store import StoreConflict, check_writable_folder, config_differences
from hdm.pipelines.cluster import BatchError
from hdm.pipelines.config import DownscaleRunConfig, TimesConfig

log = logging.getLogger("hdm")

__all__ = ["check_out_dir", "input_identity", "new_inputs", "process_new"]

#: the sidecar beside ``<stem>.zarr`` recording the input file the store was made from
INPUT_SUFFIX = ".input.json"
#: errors that are the output side's whichever file raised them
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def input_identity(path: Path) -> dict:
    """What tells a replaced input file from the one a store was made from: its size and
    modification time in ns (an atomic replacement, an ERA5T file followed by the final
    one, a rolling ``latest.nc``, changes them; the file is not read)."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _sidecar(out: Path) -> Path:
    return out.with_name(out.name + INPUT_SUFFIX)


def _recorded_identity(out: Path) -> dict | None:
    """The identity recorded for ``out`` (None: none, e.g. a store made before it was)."""
    try:
        record = json.loads(_sidecar(out).read_text())
        return {"size": int(record["size"]), "mtime_ns": int(record["mtime_ns"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _record_identity(out: Path, path: Path, identity: dict) -> None:
    sidecar = _sidecar(out)
    tmp = sidecar.with_name(f".{sidecar.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"input": str(path.absolute()), **identity}, sort_keys=True))
    os.replace(tmp, sidecar)


def _is_complete(store: Path) -> bool:
    manifest = read_manifest(store) if store.exists() else None
    return bool(manifest) and manifest.get("status") == "complete"


def _scan(inbox: Path, out_dir: Path, pattern: str) -> list[tuple[Path, Path, str]]:
    """(input file, output store, state) for every input: state is ``complete``, ``new``
    (no complete store: made or resumed) or ``changed`` (its store was made from a file
    of another size or time: made again)."""
    if not inbox.is_dir():
        raise FileNotFoundError(f"the inbox {inbox} is not a directory")
    found = []
    for f in sorted(inbox.glob(pattern)):
        if not f.is_file():
            continue
        out = out_dir / f"{f.stem}.zarr"
        recorded = _recorded_identity(out)
        changed = recorded is not None and recorded != input_identity(f)
        if changed and out.exists():
            found.append((f, out, "changed"))
        else:
            found.append((f, out, "complete" if _is_complete(out) else "new"))
    return found


def new_inputs(inbox: Path, out_dir: Path, pattern: str = "*.nc") -> list[tuple[Path, Path]]:
    """(input file, output store) pairs whose store is missing, incomplete, or was made
    from a file since replaced under the same name."""
    found = _scan(Path(inbox), Path(out_dir), pattern)
    return [(f, out) for f, out, state in found if state != "complete"]


def check_out_dir(out_dir: Path) -> None:
    """Fail before any input is read when the output folder cannot be made or written."""
    check_writable_folder(out_dir, f"the output directory {out_dir}")


def _job(cfg: DownscaleRunConfig, path: Path, out: Path) -> DownscaleRunConfig:
    inputs = (
        replace(cfg.inputs, truth=str(path))
        if cfg.inputs.truth
        else replace(cfg.inputs, coarse=str(path), truth="")
    )
    return replace(
        cfg,
        name=f"{cfg.name}/{path.stem}",
        inputs=inputs,
        times=TimesConfig(every=cfg.times.every),
        output=replace(cfg.output, out=str(out)),
    )


def _sampling(job: DownscaleRunConfig, checkpoint_sha256: str | None) -> dict:
    """The job's part of a store's fingerprint that a config can change (the input file
    itself is compared by its identity; ``auto`` values are resolved by each run)."""
    from hdm.pipelines.batch import resolved_config

    sampling = resolved_config(job).sampling_dict()
    sampling["checkpoint"] = checkpoint_sha256
    sampling["inputs"] = {
        k: v for k, v in sampling["inputs"].items() if k not in ("truth", "coarse")
    }
    return sampling


def _config_differences(
    cfg: DownscaleRunConfig, complete: list[tuple[Path, Path]]
) -> tuple[list[str], list[str]]:
    """(the stores among ``complete`` made with another config, the keys that differ)."""
    from hdm.hilbert.checkpoints import file_sha256

    try:
        sha = file_sha256(cfg.checkpoint) if cfg.checkpoint else None
    except OSError:
        sha = None
    stores, keys = [], []
    for path, out in complete:
        recorded = ((read_manifest(out) or {}).get("fingerprint") or {}).get("sampling")
        if not isinstance(recorded, dict):
            continue
        current = _sampling(_job(cfg, path, out), sha)
        recorded = plain_values(recorded)
        recorded["inputs"] = {
            k: v for k, v in (recorded.get("inputs") or {}).items() if k not in ("truth", "coarse")
        }
        if sha is None:
            recorded.pop("checkpoint", None)
            current.pop("checkpoint", None)
        for name, value in list(current.get("ensemble", {}).items()):
            if name in ("teleport", "inflation") and isinstance(value, str):  # auto, available:
                # resolved by each run (a number, or off)
                current["ensemble"].pop(name)
                (recorded.get("ensemble") or {}).pop(name, None)
        current = plain_values(current)  # tuples as lists, as recorded
        diff = config_differences(recorded, current)
        if diff:
            stores.append(str(out))
            keys += [d for d in diff if d not in keys]
    return stores, keys


def _output_side(exc: OSError, out_dir: Path) -> bool:
    """Whether an OSError is about the output (a store, the output folder, a full or
    read-only disk), not about the input file."""
    if isinstance(exc, StoreConflict) or exc.errno in _OUTPUT_ERRNOS:
        return True
    root = out_dir.absolute()
    for name in (exc.filename, exc.filename2):
        if name is not None:
            where = Path(os.fsdecode(name)).absolute()
            if where == root or root in where.parents:
                return True
    try:  # the folder may have become unwritable since the run began
        check_out_dir(out_dir)
    except PermissionError:
        return True
    return False


def process_new(
    cfg: DownscaleRunConfig,
    inbox: str | Path,
    out_dir: str | Path,
    *,
    pattern: str = "*.nc",
    progress: bool = False,
    run_id: str | None = None,
) -> dict:
    """Downscale every new input file; returns ``processed``, ``failed`` (runs that
    failed, or whose output could not be written), ``bad_input`` (files skipped as
    unusable), ``other_config`` (complete stores made with another config: kept) and
    ``status``."""
    from hdm.pipelines.job import run_downscale_job

    inbox, out_dir = Path(inbox), Path(out_dir)
    found = _scan(inbox, out_dir, pattern)
    todo = [(f, out, state) for f, out, state in found if state != "complete"]
    complete = [(f, out) for f, out, state in found if state == "complete"]
    other_config, keys = _config_differences(cfg, complete) if complete else ([], [])
    if other_config:
        log.warning(
            "%d store(s) in %s were made with another config (%s): they are kept; remove "
            "them, or use another --out-dir, to downscale their inputs with this one",
            len(other_config),
            out_dir,
            "; ".join(keys[:6]),
        )
    result = {"processed": [], "failed": [], "bad_input": [], "other_config": other_config}
    if not todo:
        log.info("no new input in %s (%s): nothing to do", inbox, pattern)
        return {"status": "nothing to do", **result}
    check_out_dir(out_dir)
    processed, failed, bad_input = result["processed"], result["failed"], result["bad_input"]
    for path, out, state in todo:
        job = _job(cfg, path, out)
        overwrite = state == "changed"
        if overwrite:
            log.info("input %s changed since its store was made: downscaling it again", path)
        else:
            log.info("new input %s -> %s", path, out)
        try:
            identity = input_identity(path)
            if not out.exists():  # the file the store is made from, should the run stop
                _record_identity(out, path, identity)
            run_downscale_job(
                job, resume=not overwrite, overwrite=overwrite, progress=progress, run_id=run_id
            )
            _record_identity(out, path, identity)
            processed.append(str(out))
        except BatchError as exc:
            log.error("%s failed: %s", path, exc)
            failed.append(str(path))
        except OSError as exc:
            if not _output_side(exc, out_dir):
                log.error("%s: bad input, left in the inbox: %s", path, exc)
                bad_input.append(str(path))
                continue
            log.error("%s: cannot write its output %s: %s", path, out, exc)
            failed.append(str(path))
        except (ValueError, KeyError) as exc:  # this file's input: the rest go on
            log.error("%s: bad input, left in the inbox: %s", path, exc)
            bad_input.append(str(path))
    status = "failed" if failed or bad_input else "done"
    return {"status": status, **result}
