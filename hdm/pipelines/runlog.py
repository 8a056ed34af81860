"""Run ids and the log format: every command's log lines and outputs name their run.

A run id is ``YYYYmmddTHHMMSS-xxxxxx`` (UTC start time and 6 random hex digits), made
once per ``hdm`` command (or taken from ``HDM_RUN_ID``, so a scheduler's wrapper can set
it, e.g. to ``slurm-<job id>``: then every torchrun rank logs the same id). It prefixes
every log line, travels with the batch tasks to the Dask workers, and is written into
the outputs' provenance (a batch store's manifest, markers and attributes, a training
run's ``train_log.json`` and ``model.pt`` metadata).
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from datetime import UTC, datetime

__all__ = ["configure_logging", "current_run_id", "new_run_id"]

RUN_ID_ENV = "HDM_RUN_ID"


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def current_run_id() -> str:
    """The run id of a command: ``HDM_RUN_ID`` when set, else a new one."""
    return os.environ.get(RUN_ID_ENV) or new_run_id()


class _RunIdFilter(logging.Filter):
    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = self.run_id
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to the ``sys.stderr`` of the moment, not the one at its creation: a
    notebook or a test harness may swap the stream (and close the old one) between
    two runs in one process."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


def configure_logging(run_id: str, verbose: bool = False) -> None:
    """Log lines ``time LEVEL [run id] logger: message`` on stderr."""
    handler = _StderrHandler()
    handler.addFilter(_RunIdFilter(run_id))
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s [%(run_id)s] %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, "_hdm", False)]
    handler._hdm = True
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # Dask's scheduler/worker chatter (connections, nannies) only with --verbose
    for name in ("distributed", "tornado", "asyncio"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
