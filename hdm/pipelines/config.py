"""Typed, frozen run configurations loaded from YAML.

A training config file has the sections below; every key is optional except
``data.dataset``. Unknown or misspelled keys are errors that name the key and suggest
the closest valid one; the resolved config (defaults filled in) is saved next to every
output, and ``--set section.key=value`` overrides a value from the command line.

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
import difflib
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from hdm.hilbert.covariance import CovarianceOperator, SpectralCovariance, WhiteNoise
from hdm.hilbert.schedules import CosineVP, LinearVP, NoiseSchedule
from hdm.hilbert.training import OptimConfig


class ConfigError(ValueError):
    """A configuration file or override that cannot be used."""


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, and the seed of its train/valid/test split.

    ``dataset`` is a functional dataset (quadratic, melbourne, italy_power, grf), a named
    gridded dataset (uk_t2m, see :mod:`hdm.domains.atmosphere`) or any name together with
    ``path`` (netCDF/zarr file or glob), ``variables`` (comma-separated) and the training
    period ``train_start``/``train_end`` (ISO times, bounds included). For named gridded
    datasets these override the shipped defaults.
    """

    dataset: str
    seed: int = 0
    path: str = ""
    variables: str = ""
    train_start: str = ""
    train_end: str = ""


@dataclass(frozen=True)
class NoiseConfig:
    """The covariance Q of the forward noise: ``spectral`` (SE/Matérn) or ``white`` (Q = I).
    ``lengthscale`` in the units of the dataset's coordinate."""

    kind: str = "spectral"
    kernel: str = "se"
    lengthscale: float = 0.1
    nu: float = 2.5

    def build(self) -> CovarianceOperator:
        if self.kind == "white":
            return WhiteNoise()
        if self.kind == "spectral":
            return SpectralCovariance(self.kernel, self.lengthscale, self.nu)
        raise ConfigError(f"noise.kind must be 'spectral' or 'white', got {self.kind!r}")


@dataclass(frozen=True)
class ScheduleConfig:
    kind: str = "cosine"

    def build(self) -> NoiseSchedule:
        if self.kind == "cosine":
            return CosineVP()
        if self.kind == "linear":
            return LinearVP()
        raise ConfigError(f"schedule.kind must be 'cosine' or 'linear', got {self.kind!r}")


@dataclass(frozen=True)
class ModelConfig:
    """TimeConditionedFNO size and the denoiser parameterisation ("v" or "eps")."""

    width: int = 48
    n_modes: int = 64
    n_modes_2: int = 0  # modes on the second axis of 2-D grids (0: same as n_modes)
    n_layers: int = 4
    time_dim: int = 128
    parameterisation: str = "v"


@dataclass(frozen=True)
class SampleConfig:
    """Defaults of ``hdm sample`` and of the benchmark for this model."""

    sampler: str = "heun"
    steps: int = 50
    n: int = 1000
    seed: int = 0


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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------ the downscaling job


@dataclass(frozen=True)
class InputsConfig:
    """Where the fields come from: a ``coarse`` file, or a high-res ``truth`` file that is
    coarse-grained by ``factor`` (an observing-system simulation). Paths relative to the
    working directory; netCDF, a glob of netCDF files, or zarr."""

    coarse: str = ""
    truth: str = ""
    factor: int = 0


@dataclass(frozen=True)
class StationsConfig:
    """Station observations: a ``file`` (CSV table or IGRA2 sounding files, comma-separated)
    or ``simulate`` (comma-separated IGRA2 ids sampled from the truth with ``noise``).
    ``noise`` is the observation-error std in the field's units (K for t2m)."""

    file: str = ""
    simulate: str = ""
    noise: float = 0.5


@dataclass(frozen=True)
class TimesConfig:
    """The time range, ISO strings, bounds included (empty: every time of the input), and
    ``every`` (hours): keep the times whose hour is a multiple of it."""

    start: str = ""
    end: str = ""
    every: int = 1


@dataclass(frozen=True)
class EnsembleRunConfig:
    """How the members are drawn (see :class:`hdm.conditioning.ensembles.EnsembleConfig`).
    ``scale``: sample at ``scale`` × the training resolution. ``coarse_noise``: std of the
    coarse observations in field units (0: 2 % of the training std). ``inflation``:
    "none", "auto" (λ estimated once per run from the stations' residuals about the
    coarse field, :mod:`hdm.conditioning.inflation`) or a number λ ≥ 1."""

    members: int = 16
    guidance: str = "mmps"
    sampler: str = "em"
    steps: int = 50
    seed: int = 0
    scale: int = 1
    coarse_noise: float = 0.0
    batch_size: int = 16
    inflation: str = "none"


@dataclass(frozen=True)
class JobqueueConfig:
    """A dask-jobqueue cluster (``batch.scheduler: slurm`` or ``pbs``): the resources of one
    batch job (``cores``, ``memory``, ``walltime``, ``queue``, ``account``), how many
    jobs to start, and extra scheduler directives (``;``-separated, e.g.
    ``--constraint=cpu;--qos=normal``) and shell lines run before the worker starts."""

    cores: int = 8
    processes: int = 1
    memory: str = "16GB"
    walltime: str = "02:00:00"
    queue: str = ""
    account: str = ""
    jobs: int = 2
    directives: str = ""
    prologue: str = ""
    local_directory: str = ""


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

    out: str = ""
    plots: bool = True


@dataclass(frozen=True)
class DownscaleRunConfig:
    """Everything ``hdm downscale`` needs (a YAML file in ``configs/downscale/`` or flags)."""

    checkpoint: str
    name: str = "downscale"
    inputs: InputsConfig = field(default_factory=InputsConfig)
    stations: StationsConfig = field(default_factory=StationsConfig)
    times: TimesConfig = field(default_factory=TimesConfig)
    ensemble: EnsembleRunConfig = field(default_factory=EnsembleRunConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    jobqueue: JobqueueConfig = field(default_factory=JobqueueConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def sampling_dict(self) -> dict:
        """The keys that decide the output's values: a store written with one set of them
        is only resumed with the same set (``batch`` and ``output`` may change)."""
        d = self.to_dict()
        for key in ("name", "batch", "jobqueue", "output"):
            d.pop(key)
        return d


def downscale_config_from_dict(raw: dict) -> DownscaleRunConfig:
    return build_dataclass(DownscaleRunConfig, raw, "")


def _suggest(key: str, options) -> str:
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def _coerce(value, typ, where: str):
    if typ is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if typ is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if typ is str and isinstance(value, str):
        return value
    if typ is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # e.g. ``inflation: 1.2``, a number or a word
    if typ is bool and isinstance(value, bool):
        return value
    raise ConfigError(f"{where} must be of type {typ.__name__}, got {value!r}")


def build_dataclass(cls, raw, where: str):
    """Build the frozen dataclass ``cls`` from a mapping, strictly."""
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
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            kwargs[name] = build_dataclass(typ, raw[name], path)
        else:
            kwargs[name] = _coerce(raw[name], typ, path)
    return cls(**kwargs)


def apply_overrides(raw: dict, overrides: list[str] | None) -> dict:
    """Apply ``section.key=value`` strings (values parsed as YAML scalars)."""
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
        node[parts[-1]] = yaml.safe_load(value)
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


def train_config_from_dict(raw: dict) -> TrainRunConfig:
    return build_dataclass(TrainRunConfig, raw, "")


def save_config(cfg, path: str | Path) -> Path:
    """Write a config dataclass (resolved: every default filled in) as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
    return path
