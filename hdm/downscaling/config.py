"""How a downscaled ensemble is drawn: one config for the Python API, YAML and the CLI.

:class:`EnsembleConfig` is the ``ensemble:`` section of a downscaling YAML file, the
keyword arguments of :func:`hdm.downscale` and the ``hdm downscale`` flags (``--members``,
``--guidance``, ...; ``--set ensemble.KEY=VALUE`` for the rest). It is checked when it
is made, so every entry point gives the same messages.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import InitVar, dataclass, field
from typing import Any, Literal

import pandas as pd

from hdm.conditioning.ensembles import RUNAWAY_BOUND, checked_bound
from hdm.conditioning.guidance import GUIDANCE, check_guidance_options
from hdm.conditioning.inflation import parse_inflation
from hdm.hilbert.devices import check_device_spec
from hdm.hilbert.sampling import DEFAULT_STEPS, SAMPLERS, default_steps, make_sampler

__all__ = [
    "COARSE_NOISE_FRACTION",
    "DEFAULT_PROFILE_NOISE",
    "DEFAULT_STATION_NOISE",
    "PROFILE_NOISE_FRACTION",
    "STATION_NOISE_FRACTION",
    "EnsembleConfig",
    "GuidanceName",
    "SamplerName",
]

#: the guidance methods and samplers by name (the choices a config may hold)
GuidanceName = Literal[tuple(GUIDANCE)]  # type: ignore[valid-type]
SamplerName = Literal[tuple(SAMPLERS)]  # type: ignore[valid-type]

#: the default std of coarse observations, as a fraction of the model's training std
COARSE_NOISE_FRACTION = 0.02
#: the default std of station observations, in the variable's units: a surface station's
#: typical error (thermometers and hygrometers 0.5 K, anemometers 1 m s-1, barometers
#: 1 hPa); variables not listed get STATION_NOISE_FRACTION of the model's training std
DEFAULT_STATION_NOISE = {
    "t2m": 0.5,
    "d2m": 0.5,
    "t": 0.5,
    "u10": 1.0,
    "v10": 1.0,
    "u": 1.0,
    "v": 1.0,
    "sp": 100.0,
    "msl": 100.0,
}
STATION_NOISE_FRACTION = 0.05
#: the default std of sounding values, in the variable's units: radiosonde wind errors
#: of 1–2 m s-1 and temperature errors of 0.5 K (WMO CIMO Guide, Part I, ch. 12); variables
#: not listed (humidity, whose error grows with its value) get PROFILE_NOISE_FRACTION of
#: the model's training std of that level
DEFAULT_PROFILE_NOISE = {"u": 1.5, "v": 1.5, "t": 0.5}
PROFILE_NOISE_FRACTION = 0.1

Noise = float | dict[str, float] | None

log = logging.getLogger("hdm")


@dataclass(frozen=True)
class EnsembleConfig:
    """How the members are drawn.

    Attributes:
        members: ensemble size N ≥ 1.
        guidance: the likelihood approximation, "mmps" (default), "sda", "dps" or
            "replacement" (SCIENCE.md §4); ``guidance_options`` its options (e.g.
            ``{"cg_steps": 5}``; :func:`hdm.conditioning.guidance.guidance_options` lists
            them).
        sampler, steps: the sampler (:func:`hdm.hilbert.sampling.make_sampler`; default
            EDM's Heun with 25 steps, 49 NFE: on the validation split it ties with
            DPM-Solver++(2M) 25 for the lowest RMSE and CRPS and a spread–skill near 1 with
            the statics prior (BENCHMARKS.md "uk-validation-samplers"), and its MMPS std
            ratios against the closed-form posterior are within [0.9, 1.1]
            ("downscale-grf-samplers"). DPM-Solver++(2M) 25 (26 NFE) was the default for
            one evaluation: one member of 7,488 on the test week diverged (55 K at the
            domain's edge; "uk-evaluation"), where Heun 25 and dpm2m 50 stay within 2 K of
            the mean on that field; that divergence, and Heun's one member in 4,032, came
            from MMPS updates that overshot the observations, which the guidance now
            shrinks (:func:`hdm.conditioning.guidance._no_overshoot`). ``steps=None``
            gives the sampler's default (:func:`hdm.hilbert.sampling.default_steps`: 25;
            50 for Euler–Maruyama and PC, whose std is 12–13 % too wide at 25 steps on
            the closed-form check); Euler–Maruyama and PC refuse fewer than 20 steps.
        seed: the run's seed; the members of a time depend only on (seed, time).
        scale: sample on ``scale`` × the training grid's resolution (zero-shot).
        coarse_noise: std of the coarse observations in the field's units (a number for
            every variable, or a mapping variable → std); None: 2 % of the model's
            training std (:data:`COARSE_NOISE_FRACTION`).
        station_noise: std of the station observations in the field's units (a number,
            or a mapping variable → std); None: :data:`DEFAULT_STATION_NOISE`.
        profile_noise: std of the soundings' values on the model's levels (a number, or a
            mapping by variable or ``variable@level``, e.g. ``{"q@850": 3e-4}``); None:
            :data:`DEFAULT_PROFILE_NOISE`, else 10 % of the level's training std. A
            noise mapping of a multi-level model may name a channel (``u@850``) or a
            variable (every level of it).
        inflation: None (off), "auto" (λ from the stations' residuals,
            :mod:`hdm.conditioning.inflation`) or a factor λ ≥ 1.
        teleport: "available" (the default): start every member at the ς* recorded with
            the model's ``hdm gaussian-stats`` statistics where it has them for the grid
            sampled, else from t_max (logged; a model without ``gaussian.pt``, statistics
            without a ς* (a model of several channels given no ``--varsigma-star``), or
            a zero-shot grid); "auto": the same, required (an
            error where it cannot); a level ς* > 0; None ("none"): from t_max. The
            sampler starts from the exact Gaussian posterior pushed to ς*
            (:mod:`hdm.conditioning.teleport`) and spends its ``steps`` below it. On the
            validation split the default sampler teleported from ς* = 1.48 has 7.5–9.5 %
            lower RMSE and 6.7–8.7 % lower CRPS at ×2/×4/×8 than from t_max
            ("uk-validation-teleport-factors"), and from ς* = 0.5 (the level where the
            Gaussian stops denoising fields neither saw better than the network,
            measured 0.56) another 2–8 % lower RMSE and 1.5–8.5 % lower CRPS, with the
            high-wavenumber power 0.11–0.16 closer to the truth's and spread–skill
            0.07–0.19 lower ("uk-validation-teleport-levels"); its closed-form std
            ratios are in "downscale-grf-teleport".
        batch_size: members per sampler call (memory).
        runaway_bound: the largest |value| a member may hold, in training standard
            deviations about the training mean (default :data:`RUNAWAY_BOUND`, 50); a
            member beyond it, or with a non-finite value, ends the run with
            :class:`~hdm.conditioning.ensembles.SamplingDiverged` naming the member and
            time, and nothing is written. None ("none"): only non-finite members are refused.
        device: where the members are drawn: "cpu" (the default: the device every
            benchmark and calibration check of this project ran on), "auto" (the first
            CUDA device where torch sees one, else the CPU), "cuda" or "cuda:K"
            (:mod:`hdm.hilbert.devices`; batch workers use their own GPU). The same device
            and seed give the same members; CPU and CUDA members differ (other random
            streams, other rounding).
        time_tolerance: pandas offset; a station observation belongs to the nearest
            field time within it.
        quantiles: the quantiles written next to mean and std.
    """

    members: int = 16
    guidance: GuidanceName = "mmps"
    guidance_options: dict[str, Any] = field(default_factory=dict)
    sampler: SamplerName = "heun"
    steps: int | None = None
    seed: int = 0
    scale: int = 1
    coarse_noise: Noise = None
    station_noise: Noise = None
    profile_noise: Noise = None
    inflation: float | Literal["auto", "none"] | None = None
    teleport: float | Literal["available", "auto", "none"] | None = "available"
    batch_size: int = 16
    runaway_bound: float | Literal["none"] | None = RUNAWAY_BOUND
    device: str = "cpu"
    time_tolerance: str = "30min"
    quantiles: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
    #: warn of the costly choices on construction (:meth:`replace` warns of its changes)
    note_choices: InitVar[bool] = True

    def __post_init__(self, note_choices: bool) -> None:
        if self.steps is None:
            object.__setattr__(self, "steps", default_steps(self.sampler))
        for name in ("members", "steps", "scale", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be at least 1 (an integer), got {value!r}")
        # checks the guidance name too (the message names every method)
        options = check_guidance_options(self.guidance, self.guidance_options)
        object.__setattr__(self, "guidance_options", options)
        make_sampler(self.sampler, self.steps)  # validates the name
        for name in ("coarse_noise", "station_noise", "profile_noise"):
            object.__setattr__(self, name, _checked_noise(name, getattr(self, name)))
        # None / "none": off; "auto"; a number >= 1 (kept as given, 1.0 included, so a
        # resolved λ is recorded as the number it was)
        inflation = parse_inflation(self.inflation)
        if isinstance(self.inflation, int | float) and inflation is None:
            inflation = float(self.inflation)  # exactly 1
        object.__setattr__(self, "inflation", inflation)
        object.__setattr__(self, "teleport", _checked_teleport(self.teleport))
        object.__setattr__(self, "runaway_bound", checked_bound(self.runaway_bound))
        object.__setattr__(self, "device", check_device_spec(self.device))
        try:
            pd.Timedelta(self.time_tolerance)
        except ValueError:
            raise ValueError(
                f"time_tolerance must be a pandas offset such as '30min', got "
                f"{self.time_tolerance!r}"
            ) from None
        quantiles = tuple(float(q) for q in self.quantiles)
        if not all(0 < q < 1 for q in quantiles):
            raise ValueError(f"quantiles must lie in (0, 1), got {list(quantiles)}")
        if len(set(quantiles)) != len(quantiles):
            raise ValueError(f"quantiles must differ from each other, got {list(quantiles)}")
        object.__setattr__(self, "quantiles", quantiles)
        if note_choices:
            self._note_choices({f.name for f in dataclasses.fields(self)})

    def _note_choices(self, fields: set[str]) -> None:
        """Warn of the choices among ``fields`` that a user should know the cost of (one
        member; fewer steps than the sampler's default). Called for every field when a
        config is made, and by :meth:`replace` for the fields it changes only, so that a
        run that copies its config (resolving the teleport level, say) warns once."""
        if "members" in fields and self.members == 1:
            log.warning(
                "one member: a single posterior draw, with no spread; its std and quantiles "
                "are written as NaN (undefined), not 0"
            )
        below_default = self.sampler in DEFAULT_STEPS and self.steps < DEFAULT_STEPS[self.sampler]
        if fields & {"sampler", "steps"} and below_default:
            log.warning(
                "sampler %r with %d steps: below its default %d (at 25 steps its members' "
                "std was 12-13 %% wider than the closed-form posterior's; BENCHMARKS.md, "
                "downscale-grf-samplers)", self.sampler, self.steps, default_steps(self.sampler),
            )  # fmt: skip

    def replace(self, **changes) -> EnsembleConfig:
        """A copy with ``changes`` (field names; an unknown one names the valid ones)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            import difflib

            names = [f.name for f in dataclasses.fields(self)]
            close = difflib.get_close_matches(unknown[0], names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"unknown ensemble option {unknown[0]!r}{hint}; options: {names}")
        if "sampler" in changes and "steps" not in changes:
            # steps that were the old sampler's default become the new sampler's
            if self.steps == default_steps(self.sampler):
                changes["steps"] = None
        copy = dataclasses.replace(self, **changes, note_choices=False)
        copy._note_choices(set(changes))
        return copy

    def coarse_noise_for(self, variable: str, training_std: float) -> float:
        """The std of ``variable``'s coarse observations (a channel name such as ``u@850``
        for a level): ``coarse_noise`` (its entry, for a mapping), else 2 % of the
        training std."""
        given = _entry(self.coarse_noise, variable)
        return given if given is not None else COARSE_NOISE_FRACTION * float(training_std)

    def station_noise_for(self, variable: str, training_std: float) -> float:
        """The std of ``variable``'s station observations: ``station_noise`` (its entry,
        for a mapping), else :data:`DEFAULT_STATION_NOISE`, else 5 % of the training std."""
        given = _entry(self.station_noise, variable)
        if given is not None:
            return given
        if variable in DEFAULT_STATION_NOISE:
            return DEFAULT_STATION_NOISE[variable]
        return STATION_NOISE_FRACTION * float(training_std)

    def profile_noise_for(self, channel: str, training_std: float) -> float:
        """The std of the soundings' values of ``channel`` (``variable@level``):
        ``profile_noise`` (its entry, for a mapping), else :data:`DEFAULT_PROFILE_NOISE`,
        else 10 % of the level's training std."""
        given = _entry(self.profile_noise, channel)
        if given is not None:
            return given
        variable = channel.split("@")[0]
        if variable in DEFAULT_PROFILE_NOISE:
            return DEFAULT_PROFILE_NOISE[variable]
        return PROFILE_NOISE_FRACTION * float(training_std)


def _checked_teleport(value) -> float | str | None:
    """None / "none" / False → None; "auto" / True → "auto"; "available"; a positive
    number (or its string) → float; anything else a ValueError naming it."""
    if value is None or value is False or (isinstance(value, str) and value.lower() == "none"):
        return None
    if value is True or (isinstance(value, str) and value.lower() == "auto"):
        return "auto"
    if isinstance(value, str) and value.lower() == "available":
        return "available"
    try:
        level = float(value)
    except (TypeError, ValueError):
        level = math.nan
    if not (math.isfinite(level) and level > 0):
        raise ValueError(
            "teleport must be available, auto, none or a noise level ς* > 0 (σ/α where the "
            f"sampler starts), got {value!r}"
        )
    return level


def _checked_noise(name: str, value: Noise) -> Noise:
    """A noise setting with every std positive and finite (floats), or None."""
    if value is None:
        return None
    items = value.items() if isinstance(value, dict) else [(None, value)]
    checked = {}
    for key, std in items:
        if isinstance(std, bool) or not (
            isinstance(std, int | float) and math.isfinite(std) and std > 0
        ):
            where = name if key is None else f"{name}[{key!r}]"
            raise ValueError(
                f"{where}: the observation noise std must be positive and finite, got {std!r}"
            )
        checked[key] = float(std)
    return checked if isinstance(value, dict) else checked[None]


def _entry(value: Noise, name: str) -> float | None:
    """A noise setting's value for the channel ``name`` (``t2m``, ``u@850``): its entry, or
    that of its variable (``u``); None: not given for it."""
    if isinstance(value, dict):
        return value.get(name, value.get(name.split("@")[0]))
    return value
