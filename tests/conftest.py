"""Shared fixtures: the repository root and small, valid configs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture()
def raw_config() -> dict:
    """The shipped default config as loaded from YAML (not yet validated)."""
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


@pytest.fixture()
def config(raw_config) -> dict:
    from permamap.config import prepare

    return prepare(copy.deepcopy(raw_config))


def tiny_raw_config(
    raw: dict, *, bbox=(101.0, 36.5, 102.0, 37.5), res_arcsec=60, tile_px=32, run="tiny"
) -> dict:
    cfg = copy.deepcopy(raw)
    cfg["run"] = run
    cfg["region"]["bbox"] = list(bbox)
    cfg["region"]["resolution_arcsec"] = res_arcsec
    cfg["tiles"]["size_px"] = tile_px
    cfg["output"]["figures"] = True
    return cfg
