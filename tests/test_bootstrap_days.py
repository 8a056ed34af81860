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


@pytest.mark.parametrize("option", ["bootstrap_days=true", "train_days=[2019-03-02]"])
def test_days_of_curves_are_refused(option):
    cfg = load_train_config("configs/functional/quadratic.yaml", [f"data.{option}"])
    name = option.split("=")[0]
    with pytest.raises(ValueError, match=rf"data\.{name} selects days of a regional gridded"):
        training_data(cfg)


def test_train_days_keep_only_those_days_and_fit_the_normaliser_on_them():
    full = training_data(uk_config())
    chosen = training_data(uk_config("data.train_days=[2019-03-04, 2019-03-02]"))
    days = full.dataset.time.values.astype("datetime64[D]")
    index = np.flatnonzero(np.isin(days, np.array(["2019-03-02", "2019-03-04"], "datetime64[D]")))
    assert chosen.metadata["train_days"] == ["2019-03-02", "2019-03-04"]
    assert chosen.metadata["n_train"] == len(index) == 48
    # the same fields in time order, normalised with the statistics of the two days
    (m_full,), (s_full,) = full.normaliser.stats("t2m").mean, full.normaliser.stats("t2m").std
    (m_days,), (s_days,) = chosen.normaliser.stats("t2m").mean, chosen.normaliser.stats("t2m").std
    assert abs(m_days - m_full) > 0.05 and abs(s_days / s_full - 1) > 0.01
    kelvin = full.tensor[torch.as_tensor(index)] * s_full + m_full
    torch.testing.assert_close(chosen.tensor, (kelvin - m_days) / s_days, atol=1e-4, rtol=0)


def test_a_train_day_outside_the_period_is_named():
    with pytest.raises(ValueError, match=r"data\.train_days: 2019-03-09 is not in the training"):
        training_data(uk_config("data.train_days=[2019-03-02, 2019-03-09]"))
    with pytest.raises(ValueError, match=r"data\.train_days: '3 March' is not a date"):
        training_data(uk_config("data.train_days=[2019-03-02, 3 March]"))


def test_fields_between_chosen_training_days_count_as_unseen():
    from hdm.domains.atmosphere import GRIDDED_DATASETS, open_unseen_period

    spec = GRIDDED_DATASETS["uk_t2m"]
    days = ["2019-03-03", "2019-03-24"]
    # inside the period 03-01..24, but on no chosen day: held out for such a model
    unseen = open_unseen_period(spec, ("2019-03-08", "2019-03-08T23"), "mine", days)
    assert unseen.sizes["time"] == 24
    with pytest.raises(ValueError, match=r"overlaps the training period 2019-03-01"):
        open_unseen_period(spec, ("2019-03-08", "2019-03-08T23"), "mine")
    with pytest.raises(ValueError, match=r"overlaps the training days \(2 chosen days\) .* \(6 "):
        open_unseen_period(spec, ("2019-03-24T18", "2019-03-25T05"), "mine", days)
