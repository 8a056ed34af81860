"""Coverage messages of the coarse observation operators on the sphere."""

from __future__ import annotations

from hdm.conditioning.observations import uncovered_strip
from hdm.hilbert.grids import Axis


def test_uncovered_strips_on_the_sphere_are_measured_on_it():
    """Coarse values over lat 0..90 of a grid with poles leave 90° uncovered (not the
    92.8 of cells beyond the poles); over lon 0..90 of the circle, 270° round to 0."""
    lat = Axis(-87.1875, 87.1875, 32, name="lat")  # cell edges at ±92.8 in a naive view
    said = uncovered_strip("h", "points", lat, 0.0, 87.1875, 5.625)
    assert said is not None and "domain [-90, 90]; the 90 below lat = 0" in said
    lon = Axis(0.0, 360.0, 64, periodic=True, name="lon")
    said = uncovered_strip("h", "points", lon, 0.0, 90.0, 5.625)
    assert said is not None and "the 270 from lon = 90 round to 0" in said
    assert uncovered_strip("h", "points", lon, 0.0, 354.375, 5.625) is None  # the whole circle
