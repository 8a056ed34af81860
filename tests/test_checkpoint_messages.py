"""A file that is not an hdm checkpoint is one line naming it (and the model beside it),
never torch's advice to load it with ``weights_only=False`` (which runs its code)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hdm.downscaling.prior import load_prior
from hdm.hilbert.checkpoints import CheckpointError, load_checkpoint


def _message(fn, path) -> str:
    with pytest.raises(CheckpointError) as info:
        fn(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert "weights_only" not in message and "arbitrary code" not in message, message
    return message


def test_a_config_yaml_given_for_the_model_names_the_model_beside_it(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    config = folder / "config.yaml"
    config.write_text("name: uk\ndata:\n  dataset: uk_t2m\n")
    (folder / "model.pt").write_bytes(b"PK\x03\x04 stands in for the model")
    for fn in (load_prior, load_checkpoint):
        message = _message(fn, config)
        assert message.startswith(f"{config} is not an hdm checkpoint (a .yaml file")
        assert message.endswith(f"the model in that folder is {folder / 'model.pt'}")


def test_a_foreign_file_without_a_model_beside_it_says_what_to_give(tmp_path):
    log = tmp_path / "train_log.json"
    log.write_text('{"loss": [1.0, 0.5]}')
    message = _message(load_prior, log)
    assert f"{log} is not an hdm checkpoint (a .json file" in message
    assert "give a model.pt or checkpoint.pt, or the folder holding one" in message


def test_a_torch_file_holding_python_objects_is_refused_without_the_unsafe_advice(tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"where": Path("somewhere")}, path)  # not loadable with weights_only=True
    message = _message(load_checkpoint, path)
    assert f"{path} is not an hdm checkpoint (it holds Python objects" in message
