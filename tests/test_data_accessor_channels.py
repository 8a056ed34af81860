"""``da.hdm.channels()``: a DataArray's accessor has the Dataset accessor's channels, as
its docstring says (the layout of its own tensor)."""

from __future__ import annotations

import hdm.data  # noqa: F401  (registers the accessor)
from hdm.data.schema import mock_fields


def test_a_dataarray_has_the_channels_of_a_dataset_holding_it():
    ds = mock_fields(["t2m", "q"], n_time=2, levels=[300, 500, 850], level_variables=["q"])
    assert ds.t2m.hdm.channels() == (("t2m", None),) == ds.hdm.channels("t2m")
    assert ds.q.hdm.channels() == (("q", 300.0), ("q", 500.0), ("q", 850.0))
    assert ds.q.hdm.channels() == ds.hdm.channels(["q"])
    # one channel per entry of the tensor's C axis
    assert ds.q.hdm.to_tensor().shape[-3] == len(ds.q.hdm.channels())
    assert ds.q.rename(None).hdm.channels() == (("data", 300.0), ("data", 500.0), ("data", 850.0))
