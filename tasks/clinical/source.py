"""``OmopSource``: OMOP CDM v5.4 tables from a folder (CSV or Parquet) or a PostgreSQL schema.

One constructor, :func:`omop_source`, takes a folder path or a ``postgresql://user@host:port/db`` URL
(schema ``public`` unless the URL says ``?schema=cdm``). Every table is validated on read against
``schemas.tables.clinical.OMOP_CDM``: required columns present, values of the declared type; the error
names the table, the column and the first bad row.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit, urlunsplit

import polars as pl

from schemas.tables.clinical import OMOP_CDM, OMOP_REQUIRED_TABLES

_TYPES: dict[str, pl.DataType] = {
    "int": pl.Int64(), "float": pl.Float64(), "str": pl.Utf8(), "date": pl.Date(), "datetime": pl.Datetime("us"),
}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class OmopValidationError(ValueError):
    """The OMOP input is not usable: a table or column is missing, or a value has the wrong type."""


class OmopSource(Protocol):
    """Where OMOP CDM tables come from."""

    description: str

    def tables(self) -> list[str]:
        """Names of the OMOP tables the source holds (lower case)."""
        ...

    def read(self, table: str) -> pl.LazyFrame:
        """Table ``table`` validated and typed (every v5.4 column, declared types); see :func:`conform`."""
        ...


def conform(table: str, frame: pl.DataFrame, origin: str) -> pl.DataFrame:
    """Return ``frame`` with the OMOP v5.4 columns of ``table`` in order and cast to their declared types.

    Parameters
    ----------
    table
        OMOP table name (a key of ``OMOP_CDM``).
    frame
        The table as read: strings (CSV) or already typed (Parquet, PostgreSQL). Column names are matched
        case-insensitively; unknown columns are dropped; optional columns that are absent become nulls.
    origin
        Where the table came from, for messages (a path or URL without password).

    Raises
    ------
    OmopValidationError
        A required column is missing, or a value cannot be read as the declared type; the message names the
        table, column, row number (0-based, in source order) and the offending value.
    """
    if table not in OMOP_CDM:
        raise OmopValidationError(f"{origin}: {table!r} is not an OMOP CDM v5.4 table this reader knows")
    lower = {c.lower(): c for c in frame.columns}
    exprs = []
    for col in OMOP_CDM[table]:
        src = lower.get(col.name)
        target = _TYPES[col.kind]
        if src is None:
            if col.required:
                raise OmopValidationError(
                    f"OMOP table {table!r} ({origin}): required column {col.name!r} is missing"
                )
            exprs.append(pl.lit(None, dtype=target).alias(col.name))
            continue
        exprs.append(_cast(pl.col(src), frame.schema[src], col.kind).alias(col.name))
    out = frame.select(exprs)
    for col in OMOP_CDM[table]:
        src = lower.get(col.name)
        if src is None:
            continue
        raw = frame.get_column(src)
        bad = out.get_column(col.name).is_null() & raw.is_not_null()
        if raw.dtype == pl.Utf8:
            bad = bad & (raw.str.strip_chars() != "")
        if bool(bad.any()):
            i = int(bad.arg_true()[0])
            raise OmopValidationError(
                f"OMOP table {table!r} ({origin}), column {col.name!r}: row {i} has {raw[i]!r}, "
                f"which is not a valid {col.kind}"
            )
        if col.required:
            nulls = out.get_column(col.name).is_null()
            if bool(nulls.any()):
                i = int(nulls.arg_true()[0])
                raise OmopValidationError(
                    f"OMOP table {table!r} ({origin}), column {col.name!r}: row {i} is empty but the column "
                    "is required"
                )
    return out


def _cast(e: pl.Expr, dtype: pl.DataType, kind: str) -> pl.Expr:
    target = _TYPES[kind]
    if dtype == pl.Utf8:
        s = e.str.strip_chars()
        s = pl.when(s == "").then(None).otherwise(s)
        if kind == "date":
            return s.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
        if kind == "datetime":
            return s.str.to_datetime(strict=False, time_unit="us")
        if kind == "int":
            # "12.0" from some exporters is an integer; "12.5" is not.
            f = s.cast(pl.Float64, strict=False)
            return pl.when(f == f.floor()).then(f).otherwise(None).cast(pl.Int64, strict=False)
        return s.cast(target, strict=False)
    if kind == "date" and dtype == pl.Datetime:
        return e.cast(pl.Date)
    if kind == "str":
        return e.cast(pl.Utf8, strict=False)
    if kind == "int" and dtype in (pl.Float32, pl.Float64):
        return pl.when(e == e.floor()).then(e).otherwise(None).cast(pl.Int64, strict=False)
    if kind == "int" and dtype.is_decimal():
        return e.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)
    if kind in ("date", "datetime") and not dtype.is_temporal():
        return pl.lit(None, dtype=target)  # wrong type: reported as a bad value by conform
    return e.cast(target, strict=False)


class FolderSource:
    """OMOP tables as ``<table>.csv`` or ``<table>.parquet`` files in one folder (names case-insensitive)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise OmopValidationError(f"OMOP folder {self.folder} does not exist or is not a folder")
        self.description = str(self.folder)
        self._files: dict[str, Path] = {}
        for p in sorted(self.folder.iterdir()):
            name = p.name.lower()
            for ext in (".csv", ".parquet", ".csv.gz"):
                if name.endswith(ext):
                    self._files.setdefault(name[: -len(ext)], p)

    def tables(self) -> list[str]:
        return sorted(t for t in self._files if t in OMOP_CDM)

    def read(self, table: str) -> pl.LazyFrame:
        path = self._files.get(table)
        if path is None:
            raise OmopValidationError(f"OMOP folder {self.folder}: table {table!r} is missing "
                                      f"(no {table}.csv or {table}.parquet)")
        try:
            if path.name.lower().endswith(".parquet"):
                raw = pl.read_parquet(path)
            else:
                raw = pl.read_csv(path, infer_schema=False, null_values=[""])
        except (pl.exceptions.PolarsError, OSError) as e:
            raise OmopValidationError(f"OMOP table {table!r}: cannot read {path}: {e}") from e
        return conform(table, raw, str(path)).lazy()


class PostgresSource:
    """OMOP tables in one schema of a PostgreSQL database (read with psycopg)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        self.schema = (query.pop("schema", ["public"]) or ["public"])[0]
        if not _IDENT.match(self.schema):
            raise ValueError(f"OMOP URL: schema {self.schema!r} is not a plain SQL identifier")
        rest = "&".join(f"{k}={v[0]}" for k, v in query.items())
        self.dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, ""))
        netloc = parts.netloc.rsplit("@", 1)[-1]
        self.description = f"{parts.scheme}://{netloc}{parts.path} (schema {self.schema})"
        self._tables: list[str] | None = None

    def _connect(self):  # type: ignore[no-untyped-def]
        import psycopg

        try:
            return psycopg.connect(self.dsn)
        except psycopg.Error as e:
            raise OmopValidationError(f"cannot connect to OMOP database {self.description}: {e}") from e

    def tables(self) -> list[str]:
        if self._tables is None:
            with self._connect() as conn:
                rows = conn.execute(
                    "select lower(table_name) from information_schema.tables where table_schema = %s",
                    (self.schema,),
                ).fetchall()
            self._tables = sorted(r[0] for r in rows if r[0] in OMOP_CDM)
        return self._tables

    def read(self, table: str) -> pl.LazyFrame:
        if table not in self.tables():
            raise OmopValidationError(f"OMOP database {self.description}: table {table!r} is missing")
        with self._connect() as conn:
            cur = conn.execute(f'select * from "{self.schema}"."{table}"')  # names checked above
            names = [d.name.lower() for d in (cur.description or [])]
            rows = cur.fetchall()
        # Build column by column as strings or Python objects; conform does the typing and the checks.
        data = {n: [r[i] for r in rows] for i, n in enumerate(names)}
        try:
            raw = pl.DataFrame(data, strict=False)
        except (pl.exceptions.PolarsError, TypeError) as e:
            raise OmopValidationError(f"OMOP table {table!r} ({self.description}): {e}") from e
        return conform(table, raw, self.description).lazy()


def omop_source(spec: str | Path) -> OmopSource:
    """An :class:`OmopSource` for a folder or a ``postgresql://`` URL.

    Parameters
    ----------
    spec
        A folder of ``<table>.csv``/``<table>.parquet`` files, or ``postgresql://user@host:port/db`` with an
        optional ``?schema=NAME`` (default ``public``).

    Raises
    ------
    OmopValidationError
        The folder does not exist.
    """
    text = str(spec)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresSource(text)
    return FolderSource(Path(text))


def read_all(source: OmopSource, tables: tuple[str, ...] = OMOP_REQUIRED_TABLES) -> dict[str, pl.LazyFrame]:
    """Every table in ``tables`` (validated), plus the optional tables the source has.

    Raises
    ------
    OmopValidationError
        A table of ``tables`` is missing (the message names it and the source).
    """
    have = set(source.tables())
    missing = [t for t in tables if t not in have]
    if missing:
        raise OmopValidationError(f"OMOP source {source.description}: required table(s) {missing} missing")
    out = {t: source.read(t) for t in tables}
    for t in sorted(have - set(tables)):
        out[t] = source.read(t)
    return out
