"""A non-editable install runs on its own: ``pip install /path/to/repo`` (not ``-e``) into a
folder outside the repository, then ``hdm --version`` and the demo with ``HDM_DATA_DIR``.

The install uses the test environment's dependencies (``--no-deps``, no build
isolation), so it adds seconds, not a second download of torch; the installed package
is imported from the install folder (checked), never from the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--no-build-isolation", "--target", str(target), str(REPO),
        ],
        check=True,
        cwd=build,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "2"}
    env.pop("HDM_DATA_DIR", None)
    return target, env


def _hdm(installed, *args, cwd, extra_env=None) -> subprocess.CompletedProcess:
    target, env = installed
    return subprocess.run(
        [str(target / "bin" / "hdm"), *args],  # the installed console script
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**env, **(extra_env or {})},
    )  # fmt: skip


def test_the_install_holds_the_package_and_no_data(installed, tmp_path):
    target, env = installed
    where = subprocess.run(
        [sys.executable, "-c", "import hdm, hdm.pipelines.cli; print(hdm.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, env=env, check=True,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(target)
    assert (target / "hdm" / "downscaling" / "core.py").is_file()
    assert not (target / "data").exists() and not (target / "benchmarks").exists()
    assert (target / "bin" / "hdm").is_file()  # the console script


def test_version_from_the_install(installed, tmp_path):
    out = _hdm(installed, "--version", cwd=tmp_path)
    from hdm import __version__

    assert out.returncode == 0 and out.stdout.strip() == f"hdm {__version__}"


def test_demo_from_the_install_needs_hdm_data_dir_and_runs_with_it(installed, tmp_path):
    out = _hdm(installed, "demo", "--out", str(tmp_path / "a"), cwd=tmp_path)
    assert out.returncode == 2
    assert "HDM_DATA_DIR" in out.stderr and "Traceback" not in out.stderr
    out = _hdm(
        installed, "demo", "--members", "2", "--out", str(tmp_path / "b"), cwd=tmp_path,
        extra_env={"HDM_DATA_DIR": str(REPO / "data")},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    store = tmp_path / "b" / "uk_t2m_2019-03-28.zarr"
    with xr.open_zarr(store, consolidated=False) as ds:
        assert ds["t2m"].sizes["member"] == 2 and bool(ds["t2m"].notnull().all())


def test_hdm_data_dir_without_the_shipped_data_names_the_folder_and_what_is_missing(
    installed, tmp_path
):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = _hdm(
        installed, "demo", "--out", str(tmp_path / "c"), cwd=tmp_path,
        extra_env={"HDM_DATA_DIR": str(empty)},
    )  # fmt: skip
    assert out.returncode == 2
    assert str(empty) in out.stderr and "checkpoints/uk_t2m/model.pt" in out.stderr
