"""Shared fixtures for the tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch


@pytest.fixture
def seeded() -> Callable[[int], torch.Generator]:
    """A factory of fresh CPU generators: ``seeded(0)`` twice gives two identical streams."""
    return lambda seed: torch.Generator().manual_seed(seed)
