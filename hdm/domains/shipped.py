"""The data shipped with hdm (real samples and trained models), found in one place.

The folder is ``$HDM_DATA_DIR`` when that is set, else the repository's ``data/`` next
to the package (a source checkout or an editable install). A non-editable
``pip install`` has no ``data/`` beside the package, so it needs ``HDM_DATA_DIR``
pointing at a copy of the repository's ``data/`` folder (with ``functional/``,
``atmos/`` and ``checkpoints/``; each subfolder's ``PROVENANCE.md`` says where its files
come from).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "DATA_DIR_ENV",
    "ShippedDataError",
    "data_dir",
    "shipped_checkpoint",
    "shipped_path",
]

DATA_DIR_ENV = "HDM_DATA_DIR"

#: the repository's data folder, seen from hdm/domains/shipped.py
_REPOSITORY_DATA = Path(__file__).resolve().parents[2] / "data"


class ShippedDataError(FileNotFoundError):
    """The shipped data folder, or a file that should be in it, is missing."""


def data_dir() -> Path:
    """The folder of the shipped data: ``$HDM_DATA_DIR``, else the repository's ``data/``."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            raise ShippedDataError(f"{DATA_DIR_ENV}={env} is not a folder")
        return root
    if _REPOSITORY_DATA.is_dir():
        return _REPOSITORY_DATA
    raise ShippedDataError(
        f"hdm's shipped data folder was not found: set {DATA_DIR_ENV} to a copy of the "
        f"repository's data/ folder (looked for {_REPOSITORY_DATA})"
    )


def shipped_path(relative: str | Path, what: str = "") -> Path:
    """``data_dir() / relative``, which must exist; the error names the folder, the missing
    path and (``what``) what it is."""
    root = data_dir()
    path = root / relative
    if not path.exists():
        about = f" ({what})" if what else ""
        source = f"{DATA_DIR_ENV}={root}" if os.environ.get(DATA_DIR_ENV) else str(root)
        raise ShippedDataError(
            f"the shipped data folder {source} has no {relative}{about}; point "
            f"{DATA_DIR_ENV} at the repository's data/ folder"
        )
    return path


def shipped_checkpoint(name: str) -> Path:
    """``checkpoints/NAME/model.pt`` of the shipped data (a trained model)."""
    return shipped_path(Path("checkpoints") / name / "model.pt", f"the shipped {name} model")
