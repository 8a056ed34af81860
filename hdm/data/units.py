"""Physical units: read, compare and convert ``units`` attributes, with pint.

Units are the UDUNITS/CF strings of the ``units`` attribute (``"K"``, ``"degC"``,
``"m s-1"``, ``"m s**-1"``, ``"kg m-2"``, ``"hPa"``, ``"1"``). They are read by pint with
cf-xarray's registry (:mod:`cf_xarray.units`), which knows the CF spellings (powers
written ``m2 s-2``, ``degrees_north``, ``%``, ``Celsius``), so the many spellings of
one unit compare equal (``"K"``, ``"kelvin"``, ``"degK"``).

Every conversion between two units of one dimension is affine,

    x_to = a · x_from + b,

with b ≠ 0 only between temperature scales of different zeros (°C → K: a = 1,
b = 273.15; °F → K: a = 5/9, b = 255.372…). :func:`affine` gives (a, b) and
:func:`to_units` applies it to an xarray object lazily (dask stays dask). A *spread* —
a standard deviation, an RMSE, a noise std — is a difference of two values, so it
converts by a alone (:func:`convert_spread`: 1 °C of error is 1 K of error).

A missing ``units`` attribute, or an empty one, means *unknown*, not dimensionless
(``"1"`` is dimensionless): nothing is converted from or to unknown units, and such
values are taken to be in whatever units they are compared with.

Errors (:class:`UnitsError`, a ``ValueError``) are one line naming the object, its
units and the units asked for. A bare ``"F"`` is the farad, not a temperature scale: a
temperature written so is refused, with the spelling to use (``'degF'``).
"""

from __future__ import annotations

import functools
import logging
import math
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    import pint

__all__ = [
    "UnitsError",
    "affine",
    "convert_spread",
    "convert_values",
    "is_pressure",
    "known",
    "parse_units",
    "same_units",
    "to_units",
]

# Meteorology's "mb" is the millibar; pint (and cf-xarray) read it as the millibarn, an
# area. Only whole strings are replaced: "mb" inside a longer expression is left alone.
_ALIASES = {"mb": "mbar", "millibars": "mbar"}
# Temperature scales written out in words, as station tables and old files do: pint reads
# "deg C" as an angle (degree) times a degree Celsius, which converts to K silently wrong
# (10 "deg C" → 0.175 K), and "degrees_C" or "Kelvin" not at all. Matched on the whole
# string, case and "_" / blanks aside.
_SCALES = {"degC": ("c", "celsius"), "degF": ("f", "fahrenheit"), "K": ("k", "kelvin")}
_SPELLED_TEMPERATURES = {
    f"{prefix}{name}".strip(): unit
    for unit, names in _SCALES.items()
    for name in names
    for prefix in ("deg ", "degree ", "degrees ", "")
    if prefix or len(name) > 1
} | {"kelvins": "K"}


# A bare scale letter is not read as that scale: "F" is pint's farad (and "C" UDUNITS's
# coulomb, though cf-xarray reads it as °C). Guessing the scale would be silently wrong
# for a capacitance, so a failed conversion of one to a temperature names the spelling.
_SCALE_LETTERS = {"F": ("Fahrenheit", "degF"), "C": ("Celsius", "degC")}


def _alias(text: str) -> str:
    """The spelling pint reads for a whole units string (module comments above)."""
    words = " ".join(text.replace("_", " ").lower().split())
    return _ALIASES.get(text) or _SPELLED_TEMPERATURES.get(words, text)


# the second point of an affine map (see affine)
_FAR_POINT = 1e9


class UnitsError(ValueError):
    """Units that cannot be read, or values that cannot be converted to the units asked
    for (different dimensions, e.g. m s-1 into K)."""


@functools.cache
def _registry() -> pint.UnitRegistry:
    # Imported on first use: building the registry takes about a second, which opening a
    # file with units that need no conversion should not pay. cf-xarray redefines a few
    # of pint's units (degrees_north, ...) on purpose; pint logs each redefinition as a
    # warning, which would print on every command line run.
    pint_log = logging.getLogger("pint.util")
    level = pint_log.level
    pint_log.setLevel(logging.ERROR)
    try:
        from cf_xarray.units import units
    finally:
        pint_log.setLevel(level)
    return units


def known(units: str | None) -> bool:
    """Whether ``units`` says anything: None and blank strings are unknown units."""
    return units is not None and str(units).strip() != ""


def parse_units(units: str, where: str = "the data") -> pint.Unit:
    """The pint unit of a UDUNITS/CF string.

    Args:
        units: e.g. ``"K"``, ``"degC"``, ``"m s-1"``, ``"hPa"``, ``"1"``.
        where: what carries these units, for the error message (``"t2m in a.nc"``).

    Raises:
        UnitsError: unknown or unreadable units (naming ``where``), or unknown units
            (None, blank), which have no unit to parse.
    """
    if not known(units):
        raise UnitsError(f"{where} has no units")
    text = _alias(str(units).strip())
    try:
        return _registry().Unit(text)
    except Exception as err:  # pint raises several types (UndefinedUnitError, ValueError)
        raise UnitsError(
            f"{where}: cannot read the units {str(units)!r} (UDUNITS/CF spellings such as "
            f"'K', 'degC', 'm s-1', 'hPa' are read; {type(err).__name__})"
        ) from None


def same_units(a: str | None, b: str | None) -> bool:
    """Whether ``a`` and ``b`` are one unit (``"K"`` and ``"kelvin"``; ``"hPa"`` and
    ``"mbar"``: units that convert with a = 1, b = 0). Two unknown units are the same;
    unknown and known are not; strings pint cannot read are compared as they are
    written (stripped)."""
    if not known(a) or not known(b):
        return known(a) == known(b)
    if str(a).strip() == str(b).strip():
        return True
    try:
        scale, offset = affine(a, b)  # one unit under two names converts as (1, 0)
    except UnitsError:
        return False  # unreadable (and differently written), or other dimensions
    return math.isclose(scale, 1.0, rel_tol=1e-12) and abs(offset) < 1e-12


def affine(from_units: str, to_units: str, where: str = "the data") -> tuple[float, float]:
    """(a, b) with ``x_to = a · x_from + b`` (module doc).

    Raises:
        UnitsError: unreadable units, or units of different dimensions (the two units
            and their dimensions named, with ``where``).
    """
    src = parse_units(from_units, where)
    dst = parse_units(to_units, where)
    if src == dst:
        return 1.0, 0.0
    ureg = _registry()
    try:
        # two points of the affine map, 0 and a large x: (f(x) − b) / x keeps a to the
        # last digits, where f(1) − b would lose those of the offset (°F → K: 255.37...)
        b = float(ureg.Quantity(0.0, src).to(dst).magnitude)
        a = (float(ureg.Quantity(_FAR_POINT, src).to(dst).magnitude) - b) / _FAR_POINT
    except Exception as err:  # pint's DimensionalityError and offset-unit errors
        raise UnitsError(
            f"{where} is in {from_units!r} ({src.dimensionality}), which cannot be "
            f"converted to {to_units!r} ({dst.dimensionality})"
            + (_letter_hint(from_units, src, dst) or _letter_hint(to_units, dst, src))
        ) from err
    return a, b


def _letter_hint(units: str, unit: pint.Unit, other: pint.Unit) -> str:
    """``"; 'F' is the farad; for Fahrenheit write 'degF'"`` where ``units`` is a bare
    scale letter (``_SCALE_LETTERS``) read as ``unit``, not a temperature, and
    ``other`` is a temperature; else ``""``."""
    letter = _SCALE_LETTERS.get(str(units).strip())
    temperature = _registry().Unit("K").dimensionality
    if letter is None or unit.dimensionality == temperature or other.dimensionality != temperature:
        return ""
    scale, spelling = letter
    return f"; {str(units).strip()!r} is the {unit}; for {scale} write {spelling!r}"


def convert_values(
    values: np.ndarray | float, from_units: str, to_units: str, where: str = "the data"
) -> np.ndarray | float:
    """Values (any shape) in ``from_units`` → the same values in ``to_units``."""
    a, b = affine(from_units, to_units, where)
    return values * a + b if (a, b) != (1.0, 0.0) else values


def convert_spread(spread: float, from_units: str, to_units: str, where: str = "the data") -> float:
    """A std, an RMSE, a noise level (a difference of values; ≥ 0) in ``from_units`` →
    ``to_units``: ``a · spread``, without the offset (module doc)."""
    a, _ = affine(from_units, to_units, where)
    return abs(a) * spread


def is_pressure(units: str | None) -> bool:
    """Whether ``units`` are readable units of pressure (Pa, hPa, mbar, atm, ...)."""
    if not known(units):
        return False
    try:
        return parse_units(units).dimensionality == _registry().Unit("Pa").dimensionality
    except UnitsError:
        return False


def to_units(da: xr.DataArray, units: str | None, what: str = "the data") -> xr.DataArray:
    """``da`` with its values in ``units`` and its ``units`` attribute set to them.

    Converted from ``da``'s own ``units`` attribute, lazily (a dask array stays one; the
    dtype is kept). Values without a ``units`` attribute, or a target of unknown units
    (None, blank), are returned unchanged: unknown units are taken to be the units
    asked for (module doc).

    Args:
        da: the values, with a ``units`` attribute.
        units: the units wanted (a UDUNITS/CF string).
        what: what ``da`` is, for messages (``"the coarse field t2m"``).

    Raises:
        UnitsError: unreadable units, or units of another dimension (naming ``what`` and
            both units).
    """
    source = da.attrs.get("units")
    if not known(units) or not known(source):
        return da
    if same_units(source, units):
        return da.assign_attrs(units=units)
    a, b = affine(source, units, what)
    # xarray drops attrs in arithmetic: they are set again, with the new units
    return (da * a + b).assign_attrs({**da.attrs, "units": units})
