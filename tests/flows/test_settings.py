from pathlib import Path

import pytest

from flows.settings import SettingsError, demo_key_file, load_settings


def test_environment_and_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    toml = tmp_path / "osteolake.toml"
    toml.write_text('warehouse = "/data/wh"\nomop = "postgresql://u@h:5432/cdm"\nworkers = 4\n')
    monkeypatch.setenv("OSTEOLAKE_CONFIG", str(toml))
    monkeypatch.setenv("OSTEOLAKE_WORKERS", "3")
    s = load_settings()
    assert s.warehouse == Path("/data/wh")
    assert s.omop == "postgresql://u@h:5432/cdm"
    assert s.workers == 3  # the environment beats the file
    assert load_settings(workers=8).workers == 8  # flags beat both


def test_archives_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OSTEOLAKE_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("OSTEOLAKE_ARCHIVES", '["/pacs/a", "dicomweb+http://127.0.0.1:8042/dicom-web"]')
    assert load_settings().archives == ["/pacs/a", "dicomweb+http://127.0.0.1:8042/dicom-web"]


def test_key_is_required_and_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OSTEOLAKE_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("OSTEOLAKE_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("OSTEOLAKE_PSEUDONYM_KEY_FILE", raising=False)
    with pytest.raises(SettingsError, match="OSTEOLAKE_PSEUDONYM_KEY"):
        load_settings().key_bytes()
    monkeypatch.setenv("OSTEOLAKE_PSEUDONYM_KEY", "short")
    with pytest.raises(SettingsError, match="at least 16"):
        load_settings().key_bytes()
    monkeypatch.setenv("OSTEOLAKE_PSEUDONYM_KEY", "a-long-enough-secret-value")
    assert load_settings().key_bytes() == b"a-long-enough-secret-value"
    assert "a-long-enough" not in repr(load_settings())  # secrets never printed


def test_key_file_and_demo_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OSTEOLAKE_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("OSTEOLAKE_PSEUDONYM_KEY", raising=False)
    path = demo_key_file(tmp_path / "demo")
    assert path.stat().st_mode & 0o077 == 0
    assert demo_key_file(tmp_path / "demo").read_text() == path.read_text()  # made once
    monkeypatch.setenv("OSTEOLAKE_PSEUDONYM_KEY_FILE", str(path))
    assert len(load_settings().key_bytes()) == 64
    monkeypatch.setenv("OSTEOLAKE_PSEUDONYM_KEY_FILE", str(tmp_path / "missing.key"))
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings().key_bytes()
