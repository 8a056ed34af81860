"""``data.bootstrap_days``: each network of a bagged ensemble trains on its own days."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdm.pipelines.config import load_train_config
from hdm.pipelines.train import bootstrap_days, training_data

UK = "configs/atmos/uk_t2m.yaml"
PERIOD = ["data.train_start=2019-03-01T00", "data.train_end=2019-03-05T23"]


def uk_config(*overrides: str):
    return load_train_config(UK, [*PERIOD, *overrides])


def test_a_resample_is_whole_days_drawn_with_replacement():
    full = training_data(uk_config())
    cfg = uk_config("data.bootstrap_days=true", "optim.seed=3")
    bagged = training_data(cfg)
    days = full.dataset.time.values.astype("datetime64[D]")
    record = bagged.metadata["bootstrap_days"]
    assert record["seed"] == 3 and len(record["days"]) == len(np.unique(days)) == 5
    # the fields are those of the drawn days, each day's 24 hours once per draw, in order
    of_day = [np.flatnonzero(days == np.datetime64(d)) for d in record["days"]]
    expected = torch.cat([full.tensor[torch.as_tensor(index)] for index in of_day])
    assert torch.equal(bagged.tensor, expected)
    assert bagged.metadata["n_train"] == len(expected) == 5 * 24
    # the normalisation is the whole period's, so that bagged networks form one model
    assert bagged.normaliser.to_dict() == full.normaliser.to_dict()
    # the Gaussian statistics read every field once
    assert torch.equal(training_data(cfg, resample=False).tensor, full.tensor)


def test_networks_with_other_seeds_see_other_days():
    full = training_data(uk_config())
    drawn = {
        tuple(bootstrap_days(full, seed).metadata["bootstrap_days"]["days"]) for seed in range(4)
    }
    assert len(drawn) > 1
    # with replacement: over four draws of five days, some day is drawn twice
    assert any(len(set(days)) < len(days) for days in drawn)


def test_bootstrap_days_of_curves_is_refused():
    cfg = load_train_config("configs/functional/quadratic.yaml", ["data.bootstrap_days=true"])
    with pytest.raises(ValueError, match=r"data\.bootstrap_days resamples the days"):
        training_data(cfg)
