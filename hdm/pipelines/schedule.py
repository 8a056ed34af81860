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
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from hdm.data.stores import read_manifest
from hdm.pipelines.cluster import BatchError
from hdm.pipelines.config import DownscaleRunConfig, TimesConfig

log = logging.getLogger("hdm")

__all__ = ["new_inputs", "process_new"]


def _is_complete(store: Path) -> bool:
    manifest = read_manifest(store) if store.exists() else None
    return bool(manifest) and manifest.get("status") == "complete"


def new_inputs(inbox: Path, out_dir: Path, pattern: str = "*.nc") -> list[tuple[Path, Path]]:
    """(input file, output store) pairs whose store is missing or incomplete."""
    if not inbox.is_dir():
        raise FileNotFoundError(f"the inbox {inbox} is not a directory")
    pairs = [(f, out_dir / f"{f.stem}.zarr") for f in sorted(inbox.glob(pattern)) if f.is_file()]
    return [(f, out) for f, out in pairs if not _is_complete(out)]


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
    failed), ``bad_input`` (files skipped as unusable) and ``status``."""
    from hdm.pipelines.job import run_downscale_job

    inbox, out_dir = Path(inbox), Path(out_dir)
    todo = new_inputs(inbox, out_dir, pattern)
    if not todo:
        log.info("no new input in %s (%s): nothing to do", inbox, pattern)
        return {"status": "nothing to do", "processed": [], "failed": [], "bad_input": []}
    processed, failed, bad_input = [], [], []
    for path, out in todo:
        inputs = (
            replace(cfg.inputs, truth=str(path))
            if cfg.inputs.truth
            else replace(cfg.inputs, coarse=str(path), truth="")
        )
        job = replace(
            cfg,
            name=f"{cfg.name}/{path.stem}",
            inputs=inputs,
            times=TimesConfig(every=cfg.times.every),
            output=replace(cfg.output, out=str(out)),
        )
        log.info("new input %s -> %s", path, out)
        try:
            run_downscale_job(job, resume=True, progress=progress, run_id=run_id)
            processed.append(str(out))
        except BatchError as exc:
            log.error("%s failed: %s", path, exc)
            failed.append(str(path))
        except (ValueError, KeyError, OSError) as exc:  # this file's input: the rest go on
            log.error("%s: bad input, left in the inbox: %s", path, exc)
            bad_input.append(str(path))
    status = "failed" if failed or bad_input else "done"
    return {"status": status, "processed": processed, "failed": failed, "bad_input": bad_input}
