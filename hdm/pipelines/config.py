"""Typed, frozen run configurations loaded from YAML.

A training config file has the sections below; every key is optional except
``data.dataset``. A downscaling config (``configs/downscale/``) has ``checkpoint``,
``inputs``, ``stations``, ``times``, ``ensemble`` (the
:class:`~hdm.downscaling.config.EnsembleConfig` of :func:`hdm.downscale`), ``batch``,
``jobqueue`` and ``output``.

Types are checked when a file is read: lists are YAML lists (``variables: [u10, v10]``;
one bare word is taken as a one-item list), an unset optional value is ``null``,
choices (a sampler, a guidance method, a schedule) are checked against the allowed
values, and unknown or misspelled keys are errors that name the key and suggest the
closest valid one. The resolved config (defaults filled in) is saved next to every
output, and ``--set section.key=value`` overrides a value from the command line (the
value is read as YAML: ``--set data.variables=[u10,v10]``).

.. code-block:: yaml

    name: quadratic                 # run name (default: the file's stem)
    data:    {dataset: quadratic, seed: 0}
    noise:   {kind: spectral, kernel: se, lengthscale: 0.566, nu: 2.5}   # or kind: white
    schedule: {kind: cosine}        # or linear
    model:   {width: 48, n_modes: 64, n_layers: 4, time_dim: 128, parameterisation: v}
    optim:   {steps: 3000, batch_size: 64, lr: 1e-3, ...}   # see OptimConfig
    sample:  {sampler: heun, steps: 50, n: 1000, seed: 0}
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Union

import pandas as pd
import yaml

from hdm.domains.statics import static_sources
from hdm.downscaling.config import EnsembleConfig, SamplerName
from hdm.hilbert.covariance import (
    CovarianceOperator,
    SpectralCovariance,
    SphericalCovariance,
    WhiteNoise,
)
from hdm.hilbert.schedules import CosineVP, LinearVP, NoiseSchedule
from hdm.hilbert.training import OptimConfig, plain_values


class ConfigError(ValueError):
    """A configuration file or override that cannot be used."""


def _require(ok: bool, key: str, allowed: str, value) -> None:
    """A ValueError ``KEY must be ALLOWED, got VALUE`` unless ``ok`` (one line; the
    section is named by :func:`build_dataclass` too)."""
    if not ok:
        raise ValueError(f"{key} must be {allowed}, got {value!r}")


# ------------------------------------------------------------------------ training


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, and the seed of its train/valid/test split.

    ``dataset`` is a functional dataset (quadratic, melbourne, italy_power, grf), a named
    gridded dataset (uk_t2m, see :mod:`hdm.domains.atmosphere`) or any name together with
    ``path`` (netCDF/zarr file or glob), ``variables`` (a list) and the training period
    ``train_start``/``train_end`` (ISO times, bounds included; one given alone takes the
    other from the named dataset's default period, or from the data's first or last
    time); ``levels``: the pressure levels (hPa) of leveled variables to keep, each
    (variable, level) a channel. For named gridded datasets these override the shipped
    defaults; a training period that overlaps a named dataset's test period is refused.

    ``bootstrap_days`` (regional gridded datasets): train on a bootstrap resample of the
    training period's days (D days drawn with replacement from its D days, seeded by
    ``optim.seed``; a day drawn twice weighs twice), so that the K networks of
    ``model.ensemble`` (seeds s … s + K − 1) each see their own days: bagging. The
    normalisation and the Gaussian statistics (``hdm gaussian-stats``) keep every day.

    ``train_days`` (regional gridded datasets): train on these calendar days of the
    training period only (``YYYY-MM-DD``; a day not in the period is refused); the
    normalisation and the Gaussian statistics are those of these days. For priors that
    have or have not seen a kind of weather, e.g. rough days against calm ones.
    """

    dataset: str
    seed: int = 0
    path: str | None = None
    variables: list[str] = field(default_factory=list)
    train_start: str | None = None
    train_end: str | None = None
    levels: list[float] = field(default_factory=list)
    bootstrap_days: bool = False
    train_days: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        twice = sorted({v for v in self.variables if list(self.variables).count(v) > 1})
        if twice:
            raise ValueError(
                f"data.variables names {', '.join(twice)} more than once "
                f"({list(self.variables)}); each variable is one channel"
            )
        bounds = {}
        for key in ("train_start", "train_end"):
            value = getattr(self, key)
            if value is None:
                continue
            try:  # a Period: "2019-03-05" is the whole day, as .sel reads the bound
                bounds[key] = pd.Period(str(value))
            except (ValueError, TypeError) as err:
                raise ValueError(f"data.{key}: {value!r} is not a date and time ({err})") from None
        if len(bounds) == 2 and bounds["train_start"].start_time > bounds["train_end"].end_time:
            raise ValueError(
                f"data.train_start {self.train_start} is after data.train_end {self.train_end}"
            )


@dataclass(frozen=True)
class NoiseConfig:
    """The covariance Q of the forward noise: ``spectral`` (SE/Matérn on a box),
    ``spherical`` (the same kernels in spherical harmonics, for global grids; the
    lengthscale in degrees of arc) or ``white`` (Q = I). ``lengthscale`` in the units of
    the dataset's coordinate. ``band_limit`` (spherical only): λ_ℓ = 0 for ℓ ≥ it;
    set it to the SFNO's ``n_modes`` (see :class:`~hdm.hilbert.covariance.SphericalCovariance`).
    ``vector`` (spherical only): the eastward and northward wind, ``[u, v]``, drawn as one
    tangent vector field and normalised alike without a shift
    (:meth:`~hdm.data.normalization.FieldNormaliser.with_vector`)."""

    kind: Literal["spectral", "spherical", "white"] = "spectral"
    kernel: Literal["se", "matern"] = "se"
    lengthscale: float = 0.1
    nu: float = 2.5
    band_limit: int | None = None
    vector: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _require(
            math.isfinite(self.lengthscale) and self.lengthscale > 0,
            "noise.lengthscale",
            "a positive number (in the units of the grid's coordinates)",
            self.lengthscale,
        )
        _require(math.isfinite(self.nu) and self.nu > 0, "noise.nu", "a positive number", self.nu)
        _require(
            self.band_limit is None or self.band_limit >= 1,
            "noise.band_limit",
            "a positive integer (or null: none)",
            self.band_limit,
        )

    def build(self, variables: Sequence[str] = ()) -> CovarianceOperator:
        """Q; ``variables`` (the model's, in channel order) resolve ``vector``."""
        for name, value in (("band_limit", self.band_limit), ("vector", self.vector)):
            if value and self.kind != "spherical":
                raise ValueError(
                    f"noise.{name} is a setting of noise.kind: spherical, not of {self.kind!r}"
                )
        if self.kind == "white":
            return WhiteNoise()
        if self.kind == "spherical":
            return SphericalCovariance(
                self.kernel, self.lengthscale, self.nu, self.band_limit, self.vector_pair(variables)
            )
        return SpectralCovariance(self.kernel, self.lengthscale, self.nu)

    def vector_pair(self, variables: Sequence[str]) -> tuple[int, int] | None:
        """The channels of ``vector`` (eastward, northward) among ``variables``."""
        if not self.vector:
            return None
        if len(self.vector) != 2 or len(set(self.vector)) != 2:
            raise ValueError(
                f"noise.vector names the eastward and northward wind, two variables; "
                f"got {list(self.vector)}"
            )
        missing = [v for v in self.vector if v not in variables]
        if missing:
            raise ValueError(
                f"noise.vector names {missing}, not among the model's variables {list(variables)}"
            )
        return (list(variables).index(self.vector[0]), list(variables).index(self.vector[1]))


@dataclass(frozen=True)
class ScheduleConfig:
    kind: Literal["cosine", "linear"] = "cosine"

    def build(self) -> NoiseSchedule:
        return CosineVP() if self.kind == "cosine" else LinearVP()


@dataclass(frozen=True)
class ModelConfig:
    """The score network's size and the denoiser parameterisation ("v" or "eps").
    ``kind``: "fno" (TimeConditionedFNO, intervals and regional boxes) or "sfno"
    (TimeConditionedSFNO, global grids; ``n_modes`` is then the number of
    spherical-harmonic degrees kept). ``n_modes_2``: FNO modes on the second axis of 2-D
    grids (null: ``n_modes``). ``sfno_weights``: "degree" (one spectral weight per ℓ) or
    "degree_order" (per (ℓ, m); :mod:`hdm.hilbert.spherical_network`).
    ``small_scale_level``: condition the network on the level of the fields' small scales
    (:mod:`hdm.hilbert.regime`; the low-pass is ``optim.small_scale_sigma``), estimated
    from the coarse field at sampling time; one-channel regional FNO models only.
    ``ensemble``: K ≥ 1 networks, network k trained on its own with ``optim.seed`` + k and
    all K sampled as one model (:class:`~hdm.hilbert.networks.NetworkEnsemble`: member b of
    an ensemble from network b mod K)."""

    kind: Literal["fno", "sfno"] = "fno"
    width: int = 48
    n_modes: int = 64
    n_modes_2: int | None = None
    sfno_weights: Literal["degree", "degree_order"] = "degree"
    n_layers: int = 4
    time_dim: int = 128
    parameterisation: Literal["v", "eps"] = "v"
    small_scale_level: bool = False
    ensemble: int = 1

    def __post_init__(self) -> None:
        for key in ("width", "n_modes", "n_layers"):
            value = getattr(self, key)
            _require(value >= 1, f"model.{key}", "a positive integer", value)
        _require(
            self.n_modes_2 is None or self.n_modes_2 >= 1,
            "model.n_modes_2",
            "a positive integer (or null: model.n_modes)",
            self.n_modes_2,
        )
        _require(
            self.time_dim >= 2 and self.time_dim % 2 == 0,
            "model.time_dim",
            "a positive even integer (the sinusoidal embedding's cos and sin halves)",
            self.time_dim,
        )
        if self.ensemble < 1:
            raise ValueError(f"model.ensemble must be at least 1, got {self.ensemble}")


@dataclass(frozen=True)
class SampleConfig:
    """Defaults of ``hdm sample`` and of the benchmark for this model."""

    sampler: SamplerName = "heun"
    steps: int = 50
    n: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        _require(self.steps >= 1, "sample.steps", "a positive integer", self.steps)
        _require(self.n >= 1, "sample.n", "a positive integer", self.n)


@dataclass(frozen=True)
class TrainRunConfig:
    """Everything ``hdm train`` needs."""

    data: DataConfig
    name: str = "run"
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    #: static input fields of the network (gridded data only): names of shipped sources
    #: (``land_fraction``, ``orography``, ``latitude``, ...: hdm.domains.statics) or
    #: mappings of StaticSource keys (name, kind, path, variable, units) for one's own file
    statics: list[str | dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        static_sources(self.statics)  # unknown names, bad keys and duplicates, named

    def to_dict(self) -> dict:
        return config_dict(self)


# ------------------------------------------------------------ the downscaling job


@dataclass(frozen=True)
class InputsConfig:
    """Where the fields come from: a ``coarse`` file, or a high-res ``truth`` file that is
    coarse-grained by ``factor`` (an observing-system simulation). A path, a glob, or a
    list of netCDF files, or a zarr store; relative to the working directory. ``profiles``:
    sounding files (IGRA2 or CSV tables) that observe a multi-level prior's levels."""

    coarse: str | list[str] | None = None
    #: what the coarse values are: "mean" (of the cell around each) or "point" (grid-point
    #: values); None: the file's CF cell_methods, else means (hdm.downscaling.inputs)
    coarse_sampling: str | None = None
    truth: str | list[str] | None = None
    factor: int | None = None
    #: soundings for a multi-level prior: IGRA2 sounding or derived-parameter files,
    #: CSV profile tables (hdm.downscaling.soundings)
    profiles: list[str] = field(default_factory=list)
    #: one value of a dimension of the input files beyond (time, [level,] lat, lon), by
    #: its coordinate value (else position), or "mean": {number: 3} for one member of an
    #: ensemble reanalysis (hdm.downscaling.inputs.select_values)
    select: dict[str, int | float | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for dim, value in self.select.items():
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError(
                    f"select.{dim} must be one value (a number, a name or 'mean'), got {value!r}"
                )


@dataclass(frozen=True)
class StationsConfig:
    """Station observations: ``file`` (CSV tables or IGRA2 sounding files) or ``simulate``
    (IGRA2 ids whose values are sampled from the truth for ``variables`` (default: every
    model variable the truth holds) with noise of std ``noise``, in each variable's
    units, a number or a mapping by variable; null: the error the guidance assumes,
    ``ensemble.station_noise`` or its default). ``units``: the units of the CSV tables'
    values (e.g. ``degC``) where the tables say none, converted to the model's; null:
    a table's own ``units`` column, else the model's units.)"""

    file: list[str] = field(default_factory=list)
    simulate: list[str] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)
    noise: float | dict[str, float] | None = None
    units: str | None = None


@dataclass(frozen=True)
class TimesConfig:
    """The time range, ISO strings, bounds included (null: every time of the input), and
    ``every`` (hours): keep the times whose hour is a multiple of it."""

    start: str | None = None
    end: str | None = None
    every: int = 1

    def __post_init__(self) -> None:
        for key in ("start", "end"):
            value = getattr(self, key)
            if value is None:
                continue
            try:
                pd.Timestamp(str(value))
            except (ValueError, TypeError) as err:
                raise ValueError(f"times.{key}: {value!r} is not a date and time ({err})") from None


@dataclass(frozen=True)
class JobqueueConfig:
    """A dask-jobqueue cluster (``batch.scheduler: slurm`` or ``pbs``): the resources of one
    batch job (``cores``, ``memory``, ``walltime``, ``queue``, ``account``), how many
    jobs to start, extra scheduler ``directives`` (e.g. ``[--constraint=cpu]``) and
    ``prologue`` shell lines run before the worker starts. ``gpus``: GPUs per job (SLURM
    ``--gres=gpu:N``, PBS ``-l ngpus=N``), with one worker process per GPU, each task on
    its worker's GPU (``ensemble.device`` auto or cuda)."""

    cores: int = 8
    processes: int = 1
    memory: str = "16GB"
    walltime: str = "02:00:00"
    queue: str | None = None
    account: str | None = None
    jobs: int = 2
    directives: list[str] = field(default_factory=list)
    prologue: list[str] = field(default_factory=list)
    gpus: int = 0
    local_directory: str | None = None


@dataclass(frozen=True)
class BatchConfig:
    """How the time range is split and run. ``chunk_size``: times per task (each task writes
    its own zarr region). ``scheduler``: ``local`` (a LocalCluster of ``workers``
    processes), ``synchronous`` (in this process, no cluster), ``slurm`` / ``pbs`` (a
    dask-jobqueue cluster, see :class:`JobqueueConfig`) or the address of a running
    scheduler (``tcp://host:8786``). ``torch_threads``: torch threads per task (a
    worker runs one task at a time).
    ``connect_timeout``: seconds to wait for a scheduler before giving up."""

    chunk_size: int = 4
    scheduler: str = "local"
    workers: int = 1
    torch_threads: int = 2
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class OutputConfig:
    """``out``: OUT.zarr (written region by region, resumable) or OUT.nc (assembled in a
    work store next to it, then written as CF netCDF). ``plots``: PNG maps next to it."""

    out: str | None = None
    plots: bool = True


@dataclass(frozen=True)
class DownscaleRunConfig:
    """Everything ``hdm downscale`` needs (a YAML file in ``configs/downscale/`` or flags)."""

    checkpoint: str | None = None
    name: str = "downscale"
    inputs: InputsConfig = field(default_factory=InputsConfig)
    stations: StationsConfig = field(default_factory=StationsConfig)
    times: TimesConfig = field(default_factory=TimesConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    jobqueue: JobqueueConfig = field(default_factory=JobqueueConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict:
        return config_dict(self)

    def sampling_dict(self) -> dict:
        """The keys that decide the output's values: a store written with one set of them
        is only resumed with the same set (``batch`` and ``output`` may change)."""
        d = self.to_dict()
        for key in ("name", "batch", "jobqueue", "output"):
            d.pop(key)
        return d

    def station_simulation_noise(self, variable: str, training_std: float) -> float:
        """The std of the noise added to ``variable``'s simulated stations
        (``stations.noise``, else the error the guidance assumes)."""
        noise = self.stations.noise
        if isinstance(noise, dict):
            noise = noise.get(variable)
        return self.ensemble.station_noise_for(variable, training_std) if noise is None else noise


# ------------------------------------------------------------------ reading configs


def config_dict(cfg) -> dict:
    """A config dataclass as plain YAML/JSON values (tuples as lists)."""
    return plain_values(dataclasses.asdict(cfg))


def _suggest(key: str, options) -> str:
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def _describe(typ) -> str:
    """A type as a reader of the config would name it."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (Union, types.UnionType):
        parts = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (list, tuple):
        plural = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}
        return f"a list of {plural.get(args[0], _describe(args[0]))}"
    if origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        typ, getattr(typ, "__name__", str(typ))
    )


def _scalar(value, typ):
    """``value`` as the scalar type ``typ``, or a TypeError."""
    if typ is bool and isinstance(value, bool):
        return value
    if isinstance(value, bool):
        raise TypeError
    if typ is int and isinstance(value, int):
        return value
    if typ is float and isinstance(value, int | float):
        return float(value)
    if typ is float and isinstance(value, str):
        return float(value)  # "1e-3", which YAML reads as a string
    if typ is str and isinstance(value, str | int | float):
        return str(value)
    if typ is str and isinstance(value, dt.date):
        return value.isoformat()  # an unquoted YAML date
    raise TypeError


def coerce(value, typ, where: str):
    """``value`` read from YAML as the annotated type ``typ`` (see the module doc)."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    wrong = f"{where} must be {_describe(typ)}, got {value!r}"
    if typ is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{where} must be set, not null")
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(wrong)
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(wrong + _suggest(str(value), [str(a) for a in args]))
    if origin in (list, tuple):
        if isinstance(value, str):
            if "," in value:
                raise ConfigError(f"{wrong}; write a YAML list: [{value}]")
            value = [value]  # one bare word: a list of one
        if not isinstance(value, list | tuple):
            raise ConfigError(wrong)
        items = [coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or typ is dict:
        if not isinstance(value, dict):
            raise ConfigError(wrong)
        return dict(value)
    if dataclasses.is_dataclass(typ):
        return build_dataclass(typ, value, where)
    try:
        return _scalar(value, typ)
    except (TypeError, ValueError):
        raise ConfigError(wrong) from None


def build_dataclass(cls, raw, where: str):
    """Build the frozen dataclass ``cls`` from a mapping, strictly (module doc). A value
    the dataclass itself refuses (its ``__post_init__`` check) is named with its key."""
    if isinstance(raw, cls):
        return raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'the config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"unknown key {(where + '.' if where else '') + str(key)!r}"
                f"{_suggest(str(key), known)} Valid keys here: {sorted(known)}"
            )
    kwargs = {}
    for name, f in known.items():
        path = f"{where}.{name}" if where else name
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in raw:
            if required:
                raise ConfigError(f"missing required key {path!r}")
            continue
        kwargs[name] = coerce(raw[name], hints[name], path)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or 'the config'}: {exc}") from None


def downscale_config_from_dict(raw: dict) -> DownscaleRunConfig:
    return build_dataclass(DownscaleRunConfig, raw, "")


def train_config_from_dict(raw: dict) -> TrainRunConfig:
    return build_dataclass(TrainRunConfig, raw, "")


def apply_overrides(raw: dict, overrides: list[str] | None) -> dict:
    """Apply ``section.key=value`` strings (values parsed as YAML)."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({exc})") from None
        except ValueError as exc:  # YAML's date-like values that are no date: 2019-13-01
            raise ConfigError(f"override {item!r}: {exc}") from None
    return raw


def read_yaml_config(path: str | Path, overrides: list[str] | None = None) -> dict:
    """The mapping in a YAML config file with ``--set`` overrides applied."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    raw = apply_overrides(raw, overrides)
    raw.setdefault("name", path.stem)
    return raw


def load_config(cls, path: str | Path, overrides: list[str] | None = None):
    """Read a config file into the frozen dataclass ``cls``; errors name the file and key."""
    raw = read_yaml_config(path, overrides)
    try:
        return build_dataclass(cls, raw, "")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_train_config(path: str | Path, overrides: list[str] | None = None) -> TrainRunConfig:
    """Read a training config (see module docstring); errors name the file and the key."""
    return load_config(TrainRunConfig, path, overrides)


def save_config(cfg, path: str | Path) -> Path:
    """Write a config dataclass (resolved: every default filled in) as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_dict(cfg), sort_keys=False))
    return path
