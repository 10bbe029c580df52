"""Shared fixtures: the real data in ../shared/data (small slices of it) and the repo's own fixtures.

Where the shared data folder is absent (a fresh clone anywhere but CI), the tests read the licence-compatible
slices shipped in `tests/fixtures/shared/data` instead (see its README); tests that measure rates on whole dev
splits ask for `full_data` and skip there. CI sets PROSOCIAL_REQUIRE_FULL_DATA=1, so a CI run without the data
fails rather than quietly testing less.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SLICES = REPO / "tests" / "fixtures" / "shared" / "data"
ENV_VAR = "PROSOCIAL_SHARED_DATA"
REQUIRE_FULL = "PROSOCIAL_REQUIRE_FULL_DATA"


def locate_shared_data() -> tuple[Path, bool]:
    """(folder, is_full): $PROSOCIAL_SHARED_DATA, else ../shared/data beside the repo, else the shipped slices.

    A variable that names a missing folder is an error, not a fallback: whoever set it meant that folder.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env)
        if not path.is_dir():
            raise FileNotFoundError(f"${ENV_VAR} names {path}, which is not a folder")
        return path, path.resolve() != SLICES.resolve()
    beside = REPO.parent / "shared" / "data"
    if beside.is_dir():
        return beside, True
    if os.environ.get(REQUIRE_FULL):
        raise FileNotFoundError(f"${REQUIRE_FULL} is set but the shared data folder is missing: {beside} "
                                f"(set ${ENV_VAR})")
    return SLICES, False


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder, or the shipped slices of it (same layout) where it is absent."""
    try:
        return locate_shared_data()[0]
    except FileNotFoundError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def full_data(shared_data: Path) -> Path:
    """The real shared data folder; skips where only the slices are here (rates need whole dev splits)."""
    if not locate_shared_data()[1]:
        pytest.skip(f"needs the full shared data folder (set ${ENV_VAR}); only the test slices are here")
    return shared_data


@pytest.fixture(scope="session")
def paper_tables_path() -> Path:
    """The dialogues of the paper's Tables 6 and 7, transcribed (shipped as a package example)."""
    from prosocial.resources import PAPER_TABLES

    return PAPER_TABLES
