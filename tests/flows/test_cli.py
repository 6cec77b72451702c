"""The console script: every command exists, and bad settings give a clear error and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import get_app

COMMANDS = ("synth", "ingest", "extract", "refresh", "sql", "dq", "models", "serve", "snapshots", "rollback")


def test_every_command_is_registered() -> None:
    result = CliRunner().invoke(get_app(), ["--help"])
    assert result.exit_code == 0, result.output
    for name in COMMANDS:
        assert name in result.output, f"{name} missing from osteolake --help"


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_help(name: str) -> None:
    result = CliRunner().invoke(get_app(), [name, "--help"])
    assert result.exit_code == 0, result.output


def test_refresh_without_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OSTEOLAKE_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("OSTEOLAKE_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("OSTEOLAKE_PSEUDONYM_KEY_FILE", raising=False)
    result = CliRunner().invoke(
        get_app(), ["refresh", "--archive", str(tmp_path), "--omop", str(tmp_path), "--warehouse", str(tmp_path / "wh")]
    )
    assert result.exit_code == 2
    assert "OSTEOLAKE_PSEUDONYM_KEY" in result.output


def test_synth_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("keep me")
    result = CliRunner().invoke(get_app(), ["synth", "--patients", "1", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "not empty" in result.output
    assert (tmp_path / "x").read_text() == "keep me"


def test_synth_writes_archive_omop_and_truth(tmp_path: Path) -> None:
    out = tmp_path / "hospital"
    result = CliRunner().invoke(get_app(), ["synth", "--patients", "2", "--seed", "7", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert any(p.is_file() for p in (out / "archive").rglob("*"))
    assert (out / "omop" / "person.csv").is_file()
    for name in ("persons", "series", "vertebrae", "dirty_files"):
        assert (out / "truth" / f"{name}.parquet").is_file()
    assert "wrote the synthetic hospital" in result.output
