"""Helpers for the flow tests."""

from __future__ import annotations

from pathlib import Path

from flows.settings import Settings

KEY = "e2e-test-pseudonym-key-0123456789"


def refresh_settings(hospital: Path, wh: Path, omop: Path | None = None) -> Settings:
    from synthetic.population import ISSUER

    return Settings(
        warehouse=wh, archives=[str(hospital / "archive")], omop=str(omop or hospital / "omop"), workers=2,
        pseudonym_key=KEY, issuer=ISSUER, horizon_years=10.0,
    )
