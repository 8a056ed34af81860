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

Operational conditions: one run at a time works in an output folder
(:func:`exclusive_out_dir`; a cron job started while the last still runs leaves, exit
3); entries matching the pattern that cannot be inputs (folders, broken links, names
that are not UTF-8, two files making one store) are named and skipped as bad input;
hidden entries are not looked at; a file that changes while it is downscaled (read chunk
by chunk) is a failed run whose store the next run makes again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from hdm.data.stores import read_manifest
from hdm.hilbert.training import plain_values
from hdm.pipelines.batch_store import StoreConflict, check_writable_folder, config_differences
from hdm.pipelines.cluster import BatchError
from hdm.pipelines.config import DownscaleRunConfig, TimesConfig

log = logging.getLogger("hdm")

__all__ = [
    "OutDirBusy",
    "check_out_dir",
    "exclusive_out_dir",
    "input_identity",
    "new_inputs",
    "process_new",
]

#: the sidecar beside ``<stem>.zarr`` recording the input file the store was made from
INPUT_SUFFIX = ".input.json"
#: errors that are the output side's whichever file raised them
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
#: the lock file in the output folder that one run at a time holds (cron overlaps)
LOCK_NAME = ".hdm-process-new.lock"


class OutDirBusy(RuntimeError):
    """Another ``hdm process-new`` run holds the output folder's lock."""


@contextlib.contextmanager
def exclusive_out_dir(out_dir: Path) -> Iterator[None]:
    """Hold ``OUT-DIR/.hdm-process-new.lock`` (an advisory ``flock``, released by the
    kernel when the process ends, ``kill -9`` included) for the run, so that a cron job
    started while the last one still works leaves the folder to it instead of writing the
    same stores; :class:`OutDirBusy` naming the holder's pid when it is held."""
    path = out_dir / LOCK_NAME
    handle = open(path, "a+")  # held open for the run: the lock lasts as long
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise OutDirBusy(
                f"another hdm process-new run (pid {holder}) is working in {out_dir}: this "
                "one leaves it the inputs (nothing done)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def input_identity(path: Path) -> dict:
    """What tells a replaced input file from the one a store was made from: its size and
    modification time in ns (an atomic replacement, an ERA5T file followed by the final
    one, a rolling ``latest.nc``, changes them; the file is not read)."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _sidecar(out: Path) -> Path:
    return out.with_name(out.name + INPUT_SUFFIX)


def _recorded_identity(out: Path, key: str | None = None) -> dict | None:
    """The identity recorded for ``out`` (None: none, e.g. a store made before it was);
    ``key="pending"``: that of the file a replacement of ``out`` was started from (None:
    none under way), so that a run killed while remaking a store resumes it."""
    try:
        record = json.loads(_sidecar(out).read_text())
        record = record if key is None else record[key]
        return {"size": int(record["size"]), "mtime_ns": int(record["mtime_ns"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _record_identity(out: Path, path: Path, identity: dict, pending: dict | None = None) -> None:
    """Write the identity of the file ``out`` was made from; ``pending``: that of the
    file a replacement is being made from (kept until it is complete)."""
    sidecar = _sidecar(out)
    record = {"input": str(path.absolute()), **identity}
    if pending is not None:
        record["pending"] = pending
    tmp = sidecar.with_name(f".{sidecar.name}.{os.getpid()}")
    tmp.write_text(json.dumps(record, sort_keys=True))
    os.replace(tmp, sidecar)


def _is_complete(store: Path) -> bool:
    manifest = read_manifest(store) if store.exists() else None
    return bool(manifest) and manifest.get("status") == "complete"


def _unusable_reason(f: Path) -> str | None:
    """Why the inbox entry ``f`` (matching the pattern) cannot be an input, or None."""
    try:
        f.name.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not valid UTF-8 (the store's name would not be): rename it"
    if f.is_symlink() and not f.exists():
        return f"a broken symbolic link (to {os.readlink(f)})"
    if f.is_dir():
        return (
            "a folder, not a file (a zarr store?): process-new takes files; downscale a "
            "store with hdm downscale --config ... --set inputs.truth=STORE (or inputs.coarse)"
        )
    if not f.is_file():
        return "not a regular file"
    return None


def _scan(
    inbox: Path, out_dir: Path, pattern: str
) -> tuple[list[tuple[Path, Path, str]], list[tuple[Path, str]]]:
    """(inputs, unusable): (input file, output store, state) for every input, state
    ``complete``, ``new`` (no complete store: made or resumed) or ``changed`` (its store
    was made from a file of another size or time: made again); and (entry, why) for the
    entries matching ``pattern`` that cannot be inputs: folders, broken links, names
    that are not UTF-8, and files whose stores would be the same (``a.nc`` and
    ``a.nc4`` both make ``a.zarr``). Hidden entries (``.name``, e.g. a download's
    temporary file) are not looked at, as a shell's ``*`` does not match them."""
    if not inbox.is_dir():
        raise FileNotFoundError(f"the inbox {inbox} is not a directory")
    candidates, unusable = [], []
    for f in sorted(inbox.glob(pattern)):
        if f.name.startswith("."):
            continue
        why = _unusable_reason(f)
        if why is None:
            candidates.append(f)
        else:
            unusable.append((f, why))
    by_store: dict[str, list[Path]] = {}
    for f in candidates:
        by_store.setdefault(f.stem, []).append(f)
    found = []
    for f in candidates:
        out = out_dir / f"{f.stem}.zarr"
        same = by_store[f.stem]
        if len(same) > 1:
            others = ", ".join(g.name for g in same if g != f)
            unusable.append((f, f"{others} would be written to the same store {out}: rename one"))
            continue
        recorded = _recorded_identity(out)
        current = input_identity(f)
        changed = recorded is not None and recorded != current
        if changed and out.exists():
            # a replacement from this very file, killed before it was complete: resumed
            remaking = _recorded_identity(out, "pending") == current and not _is_complete(out)
            found.append((f, out, "new" if remaking else "changed"))
        else:
            found.append((f, out, "complete" if _is_complete(out) else "new"))
    return found, unusable


def new_inputs(inbox: Path, out_dir: Path, pattern: str = "*.nc") -> list[tuple[Path, Path]]:
    """(input file, output store) pairs whose store is missing, incomplete, or was made
    from a file since replaced under the same name."""
    found, _ = _scan(Path(inbox), Path(out_dir), pattern)
    return [(f, out) for f, out, state in found if state != "complete"]


def check_out_dir(out_dir: Path) -> None:
    """Fail before any input is read when the output folder cannot be made or written."""
    check_writable_folder(out_dir, f"the output directory {out_dir}")


def _job(cfg: DownscaleRunConfig, path: Path, out: Path) -> DownscaleRunConfig:
    inputs = (
        replace(cfg.inputs, truth=str(path))
        if cfg.inputs.truth
        else replace(cfg.inputs, coarse=str(path), truth=None)
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
    failed, whose output could not be written, or whose file changed while it was read),
    ``bad_input`` (files skipped as unusable), ``other_config`` (complete stores made
    with another config: kept) and ``status`` ("done", "failed", "nothing to do", or
    "busy" when another run holds the output folder, :func:`exclusive_out_dir`)."""
    inbox, out_dir = Path(inbox), Path(out_dir)
    result = {"processed": [], "failed": [], "bad_input": [], "other_config": []}
    found, unusable = _scan(inbox, out_dir, pattern)
    if not unusable and all(state == "complete" for _, _, state in found):
        _warn_other_config(cfg, found, out_dir, result)
        log.info("no new input in %s (%s): nothing to do", inbox, pattern)
        return {"status": "nothing to do", **result}
    check_out_dir(out_dir)
    try:
        with exclusive_out_dir(out_dir):
            # again under the lock: a run that held it may have finished some inputs
            found, unusable = _scan(inbox, out_dir, pattern)
            _warn_other_config(cfg, found, out_dir, result)
            for path, why in unusable:
                log.error("%s: bad input, left in the inbox: %s", path, why)
                result["bad_input"].append(str(path))
            todo = [(f, out, state) for f, out, state in found if state != "complete"]
            if not todo and not unusable:
                log.info("no new input in %s (%s): nothing to do", inbox, pattern)
                return {"status": "nothing to do", **result}
            for path, out, state in todo:
                _process_one(cfg, path, out, state, out_dir, progress, run_id, result)
    except OutDirBusy as exc:
        log.warning("%s", exc)
        return {"status": "busy", "message": str(exc), **result}
    status = "failed" if result["failed"] or result["bad_input"] else "done"
    return {"status": status, **result}


def _warn_other_config(cfg: DownscaleRunConfig, found: list, out_dir: Path, result: dict) -> None:
    complete = [(f, out) for f, out, state in found if state == "complete"]
    other_config, keys = _config_differences(cfg, complete) if complete else ([], [])
    result["other_config"] = other_config
    if other_config:
        log.warning(
            "%d store(s) in %s were made with another config (%s): they are kept; remove "
            "them, or use another --out-dir, to downscale their inputs with this one",
            len(other_config),
            out_dir,
            "; ".join(keys[:6]),
        )


def _process_one(
    cfg: DownscaleRunConfig,
    path: Path,
    out: Path,
    state: str,
    out_dir: Path,
    progress: bool,
    run_id: str | None,
    result: dict,
) -> None:
    """Downscale one input into ``out`` and file it under ``result``'s lists."""
    from hdm.pipelines.job import run_downscale_job

    job = _job(cfg, path, out)
    overwrite = state == "changed"
    if overwrite:
        log.info("input %s changed since its store was made: downscaling it again", path)
    else:
        log.info("new input %s -> %s", path, out)
    recorded_here = False
    try:
        identity = input_identity(path)
        if not out.exists():  # the file the store is made from, should the run stop
            _record_identity(out, path, identity)
            recorded_here = True
        elif overwrite:  # the old store's file stays recorded until the new one is whole
            _record_identity(out, path, _recorded_identity(out) or identity, pending=identity)
        run_downscale_job(
            job, resume=not overwrite, overwrite=overwrite, progress=progress, run_id=run_id
        )
        _record_identity(out, path, identity)
    except BatchError as exc:
        log.error("%s failed: %s", path, exc)
        result["failed"].append(str(path))
        return
    except (OSError, ValueError, KeyError) as exc:  # this file's input: the rest go on
        if isinstance(exc, OSError) and _output_side(exc, out_dir):
            log.error("%s: cannot write its output %s: %s", path, out, exc)
            result["failed"].append(str(path))
            return
        log.error("%s: bad input, left in the inbox: %s", path, exc)
        result["bad_input"].append(str(path))
        if recorded_here and not out.exists():  # no store was made: no record either
            _sidecar(out).unlink(missing_ok=True)
        return
    if _changed_since(path, identity):
        # read chunk by chunk: the store may mix the file before and after; the identity
        # recorded is the one it started from, so the next run makes it again
        log.error(
            "%s changed while it was being downscaled (replaced or still being written): "
            "%s may mix the old and the new file; the next run downscales it again",
            path,
            out,
        )
        result["failed"].append(str(path))
        return
    result["processed"].append(str(out))


def _changed_since(path: Path, identity: dict) -> bool:
    try:
        return input_identity(path) != identity
    except OSError:  # removed meanwhile: the store is what the file was
        return False
