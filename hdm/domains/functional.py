"""The 1-D functional benchmark datasets of HDM, as xarray.

Each dataset is an :class:`xarray.Dataset` with one data variable ``y`` of dims
``("sample", "x")`` (float64), a coordinate ``x`` on the physical grid (its ``units``
attribute says in what), a coordinate ``split`` along ``sample`` with values "train",
"valid" and "test" (samples ordered train, valid, test), and the attributes ``name``,
``description``, ``source`` (provenance), ``x_units``, ``y_units``, ``seed`` and
``split_rule``. The **valid** split is the held-out real set used to calibrate the null
of two-sample tests (real vs real): it is disjoint from train and test and at least as
large as test.

Datasets (Lim et al. 2023 use the first two and Gridwatch; ``italy_power`` stands in
for Gridwatch, which cannot be obtained offline; ``grf`` has a known covariance):

``quadratic`` (synthetic, HDM's ``datasets/quadratic.py`` distribution)
    y(x) = (a·x² + ε) / 50 on x = 100 equally spaced points of [−10, 10], with
    a ∈ {−1, +1} equiprobable and ε ~ N(0, 1) **one constant offset per curve**.
    1,000 train, 1,000 valid and 1,000 test curves, each split from its own stream
    spawned from ``numpy.random.SeedSequence(seed)``. Coordinate ``a`` holds the sign.
    x and y are dimensionless ("1").

``melbourne`` (real, UCR archive "MelbournePedestrian", test split, as in HDM)
    Hourly pedestrian counts (count/hour) of one day at one of 10 sensors in Melbourne,
    2017; x = 0, ..., 23 (hour of day). The 120 rows with a missing value are dropped,
    leaving 2,319 curves; then a seeded shuffle and an 80/10/10 split (see below):
    1,855 train, 232 valid, 232 test. No scaling. Coordinate ``label`` is the sensor
    ("1" ... "10").

``italy_power`` (real, UCR archive "ItalyPowerDemand", train and test pooled)
    Italian electrical power demand of one day (1997), 24 hourly values, x = 0..23
    (hour). Each curve is z-normalised by the archive (per curve mean 0 and sample
    standard deviation 1), so y is dimensionless. 1,096 curves, seeded shuffle, split
    70/15/15: 767 train, 165 valid, 164 test. Coordinate ``label``: "1" for
    October–March, "2" for April–September.

``grf`` (synthetic Gaussian random field with a known covariance)
    x = 64 equally spaced points of [0, 1]; y ~ N(0, C) with the squared-exponential
    covariance C_ij = k(x_i − x_j), k(r) = exp(−r² / (2ℓ²)), ℓ = 0.1, drawn exactly as
    y = L z with L the dense Cholesky factor of C + 10⁻⁸ I and z ~ N(0, I) from
    ``numpy.random.default_rng`` (a stream per split spawned from the seed), so the
    draws have covariance C + 10⁻⁸ I, negligibly different from C.
    2,000 train, 500 valid, 500 test. :func:`grf_covariance` gives the true C.

Split rule for the real datasets, with n curves and held-out percentages p_valid and
p_test: ``n_held = ceil(n·(p_valid + p_test)/100)`` (integer arithmetic),
``n_test = floor(n_held·p_test/(p_valid + p_test))``, ``n_valid = n_held − n_test``,
``n_train = n − n_held``. The curves are permuted by
``numpy.random.default_rng(seed).permutation(n)``: the first n_train go to train, the
next n_valid to valid, the rest to test (kept in that shuffled order). For
MelbournePedestrian this gives HDM's sizes (1,855 / 232 / 232), but not its exact
members (HDM split with scikit-learn and ``random_state=42``). Coordinate
``source_row`` is the 0-based position of each curve among the data rows of the file
(for ItalyPowerDemand: TRAIN rows first, then TEST rows), so splits can be traced back.

Data files are read from ``data_dir`` if given, else from ``functional/`` of the shipped
data folder (:mod:`hdm.domains.shipped`: ``$HDM_DATA_DIR`` or the repository's
``data/``); ``data/functional/PROVENANCE.md`` says where each file comes from.

References:
    - S. Lim et al. Score-based generative modeling through stochastic evolution
      equations in Hilbert spaces (HDM). NeurIPS 2023. Code: github.com/KU-LIM-Lab/hdm-official.
    - H. A. Dau et al. The UCR time series archive. IEEE/CAA J. Autom. Sinica 6(6), 2019.
    - E. Keogh et al. Intelligent icons: integrating lite-weight data mining and
      visualization into GUI operating systems. 2006 (ItalyPowerDemand).
    - City of Melbourne, Pedestrian Counting System (2017 data), CC BY 4.0.
    - C. E. Rasmussen, C. K. I. Williams. Gaussian Processes for Machine Learning.
      MIT Press, 2006 (squared-exponential kernel).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr

from hdm.domains.shipped import DATA_DIR_ENV
from hdm.domains.shipped import data_dir as shipped_data_dir

__all__ = [
    "DATASETS",
    "SPLITS",
    "curves",
    "grf_covariance",
    "load_functional",
    "validate_curves",
]

DATASETS: tuple[str, ...] = ("quadratic", "melbourne", "italy_power", "grf")
SPLITS: tuple[str, ...] = ("train", "valid", "test")

_PROVENANCE = "data/functional/PROVENANCE.md"

# Sizes of the synthetic datasets (train, valid, test).
_QUADRATIC_SIZES = (1000, 1000, 1000)
_GRF_SIZES = (2000, 500, 500)
GRF_LENGTHSCALE = 0.1
GRF_JITTER = 1e-8


# ----------------------------------------------------------------------------- public


def load_functional(name: str, *, data_dir: str | Path | None = None, seed: int = 0) -> xr.Dataset:
    """Load one functional benchmark dataset, with its train/valid/test split.

    Args:
        name: one of :data:`DATASETS` ("quadratic", "melbourne", "italy_power", "grf").
        data_dir: folder holding the data files (the ``functional`` folder itself);
            default ``$HDM_DATA_DIR/functional`` or the project's ``data/functional``.
            Unused by the synthetic datasets.
        seed: non-negative integer seeding the synthetic draws and the split shuffle.

    Returns:
        ``xr.Dataset`` with ``y`` of dims ``("sample", "x")`` (float64, units in
        ``attrs["y_units"]``), coordinates ``x`` (units in its ``units`` attribute) and
        ``split`` (along sample), and dataset-specific coordinates (``label``, ``a``,
        ``source_row``); see the module docstring.

    Raises:
        ValueError: unknown name (with the closest known one), bad seed, malformed file.
        FileNotFoundError: a data file is missing.
    """
    key = str(name).strip().lower()
    if key not in _BUILDERS:
        close = difflib.get_close_matches(key, DATASETS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"unknown dataset {name!r}; {hint}Known: {', '.join(DATASETS)}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return _BUILDERS[key](_resolve_data_dir(data_dir), int(seed))


def curves(ds: xr.Dataset, split: str) -> xr.DataArray:
    """The curves ``y`` of one split.

    Args:
        ds: a dataset from :func:`load_functional`.
        split: "train", "valid" or "test".

    Returns:
        ``xr.DataArray`` of dims ``("sample", "x")`` with the split's curves (and their
        coordinates), in the dataset's order.
    """
    if "split" not in ds.coords:
        raise ValueError("dataset has no 'split' coordinate along 'sample'")
    if split not in SPLITS:
        close = difflib.get_close_matches(str(split), SPLITS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"unknown split {split!r}; {hint}Known: {', '.join(SPLITS)}")
    mask = (ds["split"] == split).values
    return ds["y"].isel(sample=np.flatnonzero(mask))


def validate_curves(da: xr.DataArray, *, what: str = "training data") -> None:
    """Check that curves are a non-empty ``("sample", "x")`` array of finite values.

    Args:
        da: curves of dims ``("sample", "x")`` (in any order), e.g. ``curves(ds, "train")``.
        what: how the error message calls the data.

    Raises:
        ValueError: naming the first sample (0-based position along ``sample``, with its
            ``label`` if the array has one) that holds a NaN or ±inf, the x where it
            does, and how many samples are affected; or if the dims are wrong or there
            are no curves.
    """
    if set(da.dims) != {"sample", "x"}:
        raise ValueError(f"{what} must have dims ('sample', 'x'), got {da.dims}")
    if da.sizes["sample"] == 0 or da.sizes["x"] == 0:
        raise ValueError(f"{what} contain no curves (sizes {dict(da.sizes)})")
    values = np.asarray(da.transpose("sample", "x").values)
    bad = ~np.isfinite(values)
    bad_rows = np.flatnonzero(bad.any(axis=1))
    if bad_rows.size == 0:
        return
    i = int(bad_rows[0])
    j = int(np.flatnonzero(bad[i])[0])
    label = f" (label '{da['label'].values[i]}')" if "label" in da.coords else ""
    x = float(da["x"].values[j]) if "x" in da.coords else j
    raise ValueError(
        f"{what} contain non-finite values in sample {i}{label} at x = {x} "
        f"(value {values[i, j]}; {bad_rows.size} of {values.shape[0]} samples affected)"
    )


def grf_covariance(x: np.ndarray, lengthscale: float = GRF_LENGTHSCALE) -> np.ndarray:
    """The true covariance of the ``grf`` dataset on the points ``x``.

    C_ij = exp(−(x_i − x_j)² / (2ℓ²)) (unit variance, squared exponential).

    Args:
        x: 1-D array of n points, in the units of ``lengthscale``.
        lengthscale: ℓ > 0.

    Returns:
        (n, n) float64 symmetric positive semi-definite matrix (no jitter).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D, got shape {x.shape}")
    if not lengthscale > 0:
        raise ValueError(f"lengthscale must be > 0, got {lengthscale}")
    r = x[:, None] - x[None, :]
    return np.exp(-(r**2) / (2.0 * lengthscale**2))


# ------------------------------------------------------------------------ datasets


def _quadratic(data_dir: Path, seed: int) -> xr.Dataset:
    """y = (a·x² + ε)/50, a = ±1, one ε ~ N(0, 1) per curve, on 100 points of [−10, 10]."""
    del data_dir  # synthetic
    x = np.linspace(-10.0, 10.0, 100)
    ys, signs = [], []
    for n, stream in zip(_QUADRATIC_SIZES, np.random.SeedSequence(seed).spawn(3), strict=True):
        rng = np.random.default_rng(stream)
        a = rng.choice(np.array([-1.0, 1.0]), size=n)
        eps = rng.standard_normal(n)
        ys.append((a[:, None] * x[None, :] ** 2 + eps[:, None]) / 50.0)
        signs.append(a)
    ds = _assemble(
        np.concatenate(ys),
        x,
        _split_labels(_QUADRATIC_SIZES),
        name="quadratic",
        description=(
            "y(x) = (a x^2 + eps) / 50 on 100 points of [-10, 10], a = +-1 equiprobable, "
            "eps ~ N(0, 1) one constant offset per curve (HDM's Quadratic)"
        ),
        source="synthetic (distribution of HDM datasets/quadratic.py, Lim et al. 2023)",
        x_units="1",
        y_units="1",
        seed=seed,
        split_rule="1000 / 1000 / 1000 curves, one SeedSequence(seed).spawn(3) stream per split",
    )
    return ds.assign_coords(a=("sample", np.concatenate(signs), {"long_name": "sign of x^2"}))


def _grf(data_dir: Path, seed: int) -> xr.Dataset:
    """Exact draws of N(0, C) with a squared-exponential C on 64 points of [0, 1]."""
    del data_dir  # synthetic
    x = np.linspace(0.0, 1.0, 64)
    cov = grf_covariance(x, GRF_LENGTHSCALE)
    chol = np.linalg.cholesky(cov + GRF_JITTER * np.eye(x.size))
    ys = []
    for n, stream in zip(_GRF_SIZES, np.random.SeedSequence(seed).spawn(3), strict=True):
        z = np.random.default_rng(stream).standard_normal((n, x.size))
        ys.append(z @ chol.T)  # rows y = L z, so Cov[y] = L L^T = C + jitter I
    ds = _assemble(
        np.concatenate(ys),
        x,
        _split_labels(_GRF_SIZES),
        name="grf",
        description=(
            "zero-mean Gaussian random field on 64 points of [0, 1], squared-exponential "
            "covariance k(r) = exp(-r^2 / (2 l^2)), l = 0.1, unit variance"
        ),
        source="synthetic: y = L z, L = cholesky(C + 1e-8 I), z ~ N(0, I) (numpy default_rng)",
        x_units="1",
        y_units="1",
        seed=seed,
        split_rule="2000 / 500 / 500 curves, one SeedSequence(seed).spawn(3) stream per split",
    )
    ds.attrs.update(kernel="squared_exponential", lengthscale=GRF_LENGTHSCALE, jitter=GRF_JITTER)
    return ds


def _melbourne(data_dir: Path, seed: int) -> xr.Dataset:
    """UCR MelbournePedestrian (test split): complete rows only, 80/10/10."""
    path = _require_file(
        data_dir / "MelbournePedestrian_TEST.arff",
        "the test split of the UCR archive dataset MelbournePedestrian, "
        "copied from the official HDM repository (KU-LIM-Lab/hdm-official)",
    )
    values, labels = _read_arff(path)
    complete = np.isfinite(values).all(axis=1)
    rows = np.flatnonzero(complete)
    return _split_real(
        values[complete],
        np.asarray(labels, dtype=str)[complete],
        rows,
        seed=seed,
        percents=(10, 10),
        x=np.arange(values.shape[1], dtype=np.float64),
        name="melbourne",
        description=(
            "hourly pedestrian counts of one day (2017) at one of 10 sensors of the City "
            f"of Melbourne; {int((~complete).sum())} rows with missing values dropped; "
            "label = sensor"
        ),
        source=(
            "UCR Time Series Archive, MelbournePedestrian_TEST.arff (City of Melbourne "
            f"Pedestrian Counting System, CC BY 4.0), via KU-LIM-Lab/hdm-official; {_PROVENANCE}"
        ),
        x_units="hour",
        y_units="count/hour",
    )


def _italy_power(data_dir: Path, seed: int) -> xr.Dataset:
    """UCR ItalyPowerDemand, TRAIN and TEST pooled, 70/15/15."""
    origin = "the UCR archive dataset ItalyPowerDemand, copied from the aeon 1.6.0 wheel"
    parts = [
        _read_ts(_require_file(data_dir / f"ItalyPowerDemand_{part}.ts", origin))
        for part in ("TRAIN", "TEST")
    ]
    values = np.concatenate([v for v, _ in parts])
    labels = np.asarray([lab for _, labs in parts for lab in labs], dtype=str)
    complete = np.isfinite(values).all(axis=1)
    return _split_real(
        values[complete],
        labels[complete],
        np.flatnonzero(complete),
        seed=seed,
        percents=(15, 15),
        x=np.arange(values.shape[1], dtype=np.float64),
        name="italy_power",
        description=(
            "daily Italian electrical power demand (1997), 24 hourly values, each curve "
            "z-normalised by the archive; label 1 = Oct-Mar, 2 = Apr-Sep "
            "(stand-in for HDM's Gridwatch)"
        ),
        source=(
            "UCR Time Series Archive, ItalyPowerDemand_TRAIN.ts + ItalyPowerDemand_TEST.ts "
            f"(aeon 1.6.0 package data), pooled; {_PROVENANCE}"
        ),
        x_units="hour",
        y_units="1",
    )


_BUILDERS: dict[str, Callable[[Path, int], xr.Dataset]] = {
    "quadratic": _quadratic,
    "melbourne": _melbourne,
    "italy_power": _italy_power,
    "grf": _grf,
}


# ------------------------------------------------------------------------- helpers


def _resolve_data_dir(data_dir: str | Path | None) -> Path:
    """``data_dir``, else ``functional/`` of the shipped data (:mod:`hdm.domains.shipped`)."""
    if data_dir is not None:
        return Path(data_dir)
    return shipped_data_dir() / "functional"  # a missing file is named by _require_file


def _require_file(path: Path, origin: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(
            f"data file not found: {path}. It is {origin}; see {_PROVENANCE} for where it "
            f"comes from. Pass data_dir= or set {DATA_DIR_ENV} to the folder that "
            "contains functional/."
        )
    return path


def _split_sizes(n: int, valid_pct: int, test_pct: int) -> tuple[int, int, int]:
    """(n_train, n_valid, n_test) by the rule of the module docstring."""
    held = -(-n * (valid_pct + test_pct) // 100)  # ceil, exact in integers
    n_test = held * test_pct // (valid_pct + test_pct)
    return n - held, held - n_test, n_test


def _split_labels(sizes: tuple[int, int, int]) -> np.ndarray:
    return np.repeat(np.array(SPLITS), sizes)


def _split_real(
    values: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    *,
    seed: int,
    percents: tuple[int, int],
    **meta,
) -> xr.Dataset:
    sizes = _split_sizes(values.shape[0], *percents)
    order = np.random.default_rng(seed).permutation(values.shape[0])
    pct_train = 100 - sum(percents)
    ds = _assemble(
        values[order],
        split=_split_labels(sizes),
        seed=seed,
        split_rule=(
            f"{pct_train}/{percents[0]}/{percents[1]}: default_rng(seed).permutation, "
            f"n_held = ceil(n*{sum(percents)}/100), "
            f"n_test = floor(n_held*{percents[1]}/{sum(percents)}) -> "
            f"{sizes[0]} / {sizes[1]} / {sizes[2]}"
        ),
        **meta,
    )
    return ds.assign_coords(
        label=("sample", labels[order], {"long_name": "class label of the UCR archive"}),
        source_row=("sample", rows[order], {"long_name": "0-based data row in the file(s)"}),
    )


def _assemble(
    y: np.ndarray,
    x: np.ndarray,
    split: np.ndarray,
    *,
    name: str,
    description: str,
    source: str,
    x_units: str,
    y_units: str,
    seed: int,
    split_rule: str,
) -> xr.Dataset:
    y = np.ascontiguousarray(y, dtype=np.float64)
    return xr.Dataset(
        {"y": (("sample", "x"), y, {"units": y_units, "long_name": f"{name} curve value"})},
        coords={
            "x": ("x", np.asarray(x, dtype=np.float64), {"units": x_units, "long_name": "x"}),
            "split": ("sample", split.astype(str)),
        },
        attrs={
            "name": name,
            "description": description,
            "source": source,
            "x_units": x_units,
            "y_units": y_units,
            "seed": seed,
            "split_rule": split_rule,
        },
    )


def _parse_float(token: str, path: Path, lineno: int) -> float:
    token = token.strip()
    if token == "?":
        return np.nan
    try:
        return float(token)
    except ValueError:
        raise ValueError(f"{path.name}, line {lineno}: {token!r} is not a number") from None


def _unquote(token: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return token[1:-1]
    return token


_ATTRIBUTE = re.compile(r"@attribute\s+('[^']*'|\"[^\"]*\"|\S+)\s+(.+)$", re.IGNORECASE)


def _read_arff(path: Path) -> tuple[np.ndarray, list[str]]:
    """Read a dense ARFF file of numeric attributes followed by one nominal class.

    Returns:
        (values, labels): float64 array (rows, numeric attributes), NaN where the file
        has ``?``; the class label of each row as a string.
    """
    numeric: list[str] = []
    classes: list[str] | None = None
    rows: list[list[float]] = []
    labels: list[str] = []
    in_data = False
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line or line.startswith("%"):
                continue
            where = f"{path.name}, line {lineno}"
            if not in_data:
                low = line.lower()
                if low.startswith("@relation"):
                    continue
                if low.startswith("@attribute"):
                    match = _ATTRIBUTE.match(line)
                    if match is None:
                        raise ValueError(f"{where}: malformed @attribute line {line!r}")
                    if classes is not None:
                        raise ValueError(f"{where}: expected the nominal class attribute last")
                    kind = match.group(2).strip()
                    if kind.lower() in ("numeric", "real", "integer"):
                        numeric.append(_unquote(match.group(1)))
                    elif kind.startswith("{") and kind.endswith("}"):
                        classes = [_unquote(c) for c in kind[1:-1].split(",")]
                    else:
                        raise ValueError(f"{where}: unsupported attribute type {kind!r}")
                    continue
                if low.startswith("@data"):
                    if not numeric or classes is None:
                        raise ValueError(
                            f"{where}: @data before numeric attributes and a nominal class"
                        )
                    in_data = True
                    continue
                raise ValueError(f"{where}: unexpected header line {line!r}")
            if line.startswith("{"):
                raise ValueError(f"{where}: sparse ARFF rows are not supported")
            tokens = line.split(",")
            if len(tokens) != len(numeric) + 1:
                raise ValueError(
                    f"{where}: expected {len(numeric) + 1} comma-separated values "
                    f"({len(numeric)} numbers and a label), got {len(tokens)}"
                )
            label = _unquote(tokens[-1])
            if label not in classes:
                raise ValueError(f"{where}: label {label!r} is not one of {classes}")
            rows.append([_parse_float(t, path, lineno) for t in tokens[:-1]])
            labels.append(label)
    if not in_data:
        raise ValueError(f"{path.name}: no @data section")
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(numeric)), labels


def _read_ts(path: Path) -> tuple[np.ndarray, list[str]]:
    """Read a univariate, equal-length, labelled sktime/aeon ``.ts`` file.

    Returns:
        (values, labels): float64 array (rows, series length), NaN where the file has
        ``?``; the class label of each row as a string.
    """
    header: dict[str, str] = {}
    rows: list[list[float]] = []
    labels: list[str] = []
    length: int | None = None
    classes: list[str] | None = None
    in_data = False
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{path.name}, line {lineno}"
            if not in_data:
                if not line.startswith("@"):
                    raise ValueError(f"{where}: expected an @ header or #comment, got {line!r}")
                key, _, value = line[1:].partition(" ")
                key = key.lower()
                if key == "data":
                    if header.get("univariate", "true").lower() != "true":
                        raise ValueError(f"{where}: only univariate .ts files are supported")
                    if "serieslength" in header:
                        length = int(header["serieslength"])
                    parts = header.get("classlabel", "false").split()
                    if not parts or parts[0].lower() != "true":
                        raise ValueError(f"{where}: a labelled file (@classLabel true) is needed")
                    classes = parts[1:] or None
                    in_data = True
                else:
                    header[key] = value.strip()
                continue
            series, sep, label = line.rpartition(":")
            if not sep or ":" in series:
                raise ValueError(
                    f"{where}: expected 'v1,v2,...,vn:label' (one ':'), got {line[:60]!r}"
                )
            label = label.strip()
            if classes is not None and label not in classes:
                raise ValueError(f"{where}: label {label!r} is not one of {classes}")
            values = [_parse_float(t, path, lineno) for t in series.split(",")]
            if length is None:
                length = len(values)
            if len(values) != length:
                raise ValueError(f"{where}: expected {length} values, got {len(values)}")
            rows.append(values)
            labels.append(label)
    if not in_data:
        raise ValueError(f"{path.name}: no @data section")
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), -1), labels
