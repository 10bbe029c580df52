"""Shared fixtures: the real data in ../shared/data (small slices of it) and the repo's own fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PROSOCIAL_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared data folder is missing: {SHARED_DATA} (set PROSOCIAL_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def paper_tables_path() -> Path:
    """The dialogues of the paper's Tables 6 and 7, transcribed (shipped as a package example)."""
    from prosocial.resources import PAPER_TABLES

    return PAPER_TABLES
