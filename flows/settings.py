"""One typed settings object for osteolake.

Read from ``OSTEOLAKE_*`` environment variables and an optional TOML file (``osteolake.toml`` in the working
directory, or the path in ``OSTEOLAKE_CONFIG``); command-line flags override both. Secrets (the
pseudonymisation key) come only from the environment or a key file, never from a default in code.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tasks.privacy import MIN_KEY_BYTES


class SettingsError(ValueError):
    """A setting is missing or invalid; the message says which and how to fix it."""


def _toml_path() -> Path:
    return Path(os.environ.get("OSTEOLAKE_CONFIG", "osteolake.toml"))


class Settings(BaseSettings):
    """Everything a run needs to know about its site.

    Attributes
    ----------
    warehouse
        Folder (or fsspec URL) of the lake; ``WH/osteolake.duckdb`` is the analysts' catalog.
    archives
        DICOM sources: folders, globs, fsspec URLs or ``dicomweb+http(s)://`` base URLs.
    omop
        OMOP CDM source: a folder of CSV/Parquet or a ``postgresql://`` URL (``?schema=cdm``).
    dask_address
        An existing Dask scheduler (``tcp://host:8786``); empty means a LocalCluster.
    pseudonym_key / pseudonym_key_file
        The site's secret for person_key; one of them is required for a real archive.
    """

    model_config = SettingsConfigDict(env_prefix="OSTEOLAKE_", extra="ignore", env_nested_delimiter="__")

    warehouse: Path = Field(default=Path("warehouse-data"), description="lake folder")
    archives: list[str] = Field(default_factory=list, description="DICOM sources")
    omop: str | None = Field(default=None, description="OMOP CDM folder or postgresql:// URL")
    dask_address: str | None = Field(default=None, description="existing Dask scheduler address")
    workers: int = Field(default=2, ge=1, le=512, description="LocalCluster workers")
    pseudonym_key: SecretStr | None = None
    pseudonym_key_file: Path | None = None
    issuer: str | None = Field(default=None, description="IssuerOfPatientID to assume when absent")
    keep_snapshots: int = Field(default=10, ge=1)
    timezone: str = "UTC"
    horizon_years: float = Field(default=10.0, gt=0)
    cohort_definition: Path | None = None
    extract_timeout_s: float = Field(default=600.0, gt=0)

    @field_validator("archives", mode="before")
    @classmethod
    def _split_archives(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [s for s in (p.strip() for p in v.split(",")) if s]
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_toml_path())
        return (init_settings, env_settings, toml, file_secret_settings)

    def key_bytes(self) -> bytes:
        """The pseudonymisation key; a :class:`SettingsError` that says how to provide one otherwise."""
        if self.pseudonym_key is not None:
            raw = self.pseudonym_key.get_secret_value().encode()
            source = "OSTEOLAKE_PSEUDONYM_KEY"
        elif self.pseudonym_key_file is not None:
            try:
                raw = self.pseudonym_key_file.read_bytes().strip()
            except OSError as e:
                raise SettingsError(f"pseudonym key file {self.pseudonym_key_file}: cannot read ({e})") from e
            source = str(self.pseudonym_key_file)
        else:
            raise SettingsError(
                "no pseudonymisation key: set OSTEOLAKE_PSEUDONYM_KEY or OSTEOLAKE_PSEUDONYM_KEY_FILE "
                "(a secret of at least 16 bytes, kept out of the repository); the key makes person_key"
            )
        if len(raw) < MIN_KEY_BYTES:
            raise SettingsError(f"pseudonym key from {source} is {len(raw)} bytes; at least {MIN_KEY_BYTES} needed")
        return raw


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and TOML, with non-``None`` ``overrides`` (CLI flags) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def demo_key_file(folder: Path) -> Path:
    """Create (once) a random key file beside demo output and return its path.

    Only for the synthetic demo: a real site supplies its own key.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pseudonym.key"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path
