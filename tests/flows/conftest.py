"""A tiny synthetic hospital and one clean refresh of it, shared by the flow tests of a session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.flows.helpers import refresh_settings


@pytest.fixture(scope="session")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from synthetic.hospital import generate

    out = tmp_path_factory.mktemp("hospital")
    generate(out, patients=6, seed=11)
    return out


@pytest.fixture(scope="session")
def refreshed(hospital: Path, tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> dict[str, Any]:
    from flows.nightly_refresh import run_refresh

    wh = tmp_path_factory.mktemp("wh")
    summary = run_refresh(refresh_settings(hospital, wh))
    return {"wh": wh, "summary": summary}
