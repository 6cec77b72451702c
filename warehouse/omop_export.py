"""Export to the OMOP Medical Imaging CDM extension (MI-CDM; Park et al., J Digit Imaging Inform Med 2024).

Writes four OMOP tables from the current snapshot:

- ``image_occurrence``: one row per series (``image_series_uid``), linked to a ``procedure_occurrence``;
- ``procedure_occurrence``: one row per imaging study (the procedure an image occurrence belongs to);
- ``measurement``: one row per biomarker value (series x site x biomarker), ``value_as_number`` and units;
- ``image_feature``: one row per measurement, linking it (``image_feature_event_id`` = ``measurement_id``)
  to its image occurrence.

Which biomarkers: every numeric column that declares a unit in a silver table keyed by
``series_instance_uid`` (the declarations in ``schemas/tables`` decide; nothing is listed here). The
second key column (level, side, region) becomes the anatomic site text.

person_id mapping: the warehouse holds only ``person_key``; the caller passes ``(person_id, person_key)``
built from the site's OMOP person table (``person_source_value`` through the same keyed hash). Series of
persons not in the map are left out and counted. Concept ids are 0 ("no matching concept") unless the
caller maps source values to standard concepts with ``concepts``; source values always carry the meaning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

from schemas import TABLES, Layer
from schemas.ddl import quote_ident

__all__ = ["ExportResult", "biomarker_columns", "build_export", "export_omop", "OMOP_DDL"]

OMOP_DDL: dict[str, str] = {
    "procedure_occurrence": (
        "procedure_occurrence_id bigint NOT NULL, person_id bigint NOT NULL, procedure_concept_id integer NOT NULL, "
        "procedure_date date NOT NULL, procedure_datetime timestamp, procedure_end_date date, "
        "procedure_end_datetime timestamp, procedure_type_concept_id integer NOT NULL, modifier_concept_id integer, "
        "quantity integer, provider_id bigint, visit_occurrence_id bigint, visit_detail_id bigint, "
        "procedure_source_value varchar(50), procedure_source_concept_id integer, modifier_source_value varchar(50)"
    ),
    "image_occurrence": (
        "image_occurrence_id bigint NOT NULL, person_id bigint NOT NULL, procedure_occurrence_id bigint NOT NULL, "
        "visit_occurrence_id bigint, anatomic_site_concept_id integer, wadors_uri text, local_path text, "
        "image_occurrence_date date NOT NULL, image_study_uid varchar(250) NOT NULL, "
        "image_series_uid varchar(250) NOT NULL, modality_concept_id integer NOT NULL"
    ),
    "measurement": (
        "measurement_id bigint NOT NULL, person_id bigint NOT NULL, measurement_concept_id integer NOT NULL, "
        "measurement_date date NOT NULL, measurement_datetime timestamp, measurement_time varchar(10), "
        "measurement_type_concept_id integer NOT NULL, operator_concept_id integer, value_as_number double precision, "
        "value_as_concept_id integer, unit_concept_id integer, range_low double precision, "
        "range_high double precision, provider_id bigint, visit_occurrence_id bigint, visit_detail_id bigint, "
        "measurement_source_value varchar(50), measurement_source_concept_id integer, unit_source_value varchar(50), "
        "unit_source_concept_id integer, value_source_value varchar(50), measurement_event_id bigint, "
        "meas_event_field_concept_id integer"
    ),
    "image_feature": (
        "image_feature_id bigint NOT NULL, person_id bigint NOT NULL, image_occurrence_id bigint NOT NULL, "
        "image_feature_event_field_concept_id integer, image_feature_event_id bigint, "
        "image_feature_concept_id integer NOT NULL, image_feature_type_concept_id integer NOT NULL, "
        "image_finding_concept_id integer, image_finding_id bigint, anatomic_site_concept_id integer, "
        "alg_system text, alg_datetime timestamp"
    ),
}
#: numeric columns with units that describe the acquisition or geometry of the measurement, not the person
_NOT_BIOMARKERS = frozenset({"z_mm", "kvp", "body_center_mm", "roi_volume_mm3", "n_pixels", "pixel_mm", "slice_mm",
                             "seconds"})
#: unitless biomarkers exported all the same (table, column) -> unit source value
_UNITLESS = {("vertebral_fractures", "genant_grade"): "grade", ("texture", "tbs_index"): "1"}
ORDER = ("procedure_occurrence", "image_occurrence", "measurement", "image_feature")


@dataclass(frozen=True)
class ExportResult:
    """Row counts written per OMOP table, and series left out because their person was not mapped."""

    rows: dict[str, int]
    unmapped_series: int
    target: str


def biomarker_columns() -> list[tuple[str, str, str, str | None]]:
    """``(table, column, unit, site_column)`` of every exported biomarker, from the declarations."""
    out = []
    for t in sorted(TABLES.values(), key=lambda t: t.name):
        if t.layer is not Layer.SILVER or not t.key or t.key[0] != "series_instance_uid":
            continue
        site = t.key[1] if len(t.key) > 1 else None
        for c in t.columns:
            numeric = pa.types.is_integer(c.type) or pa.types.is_floating(c.type)
            unit = c.unit or _UNITLESS.get((t.name, c.name))
            if numeric and unit and c.name not in t.key and c.name not in _NOT_BIOMARKERS:
                out.append((t.name, c.name, unit, site))
    return out


def _date_expr(con: duckdb.DuckDBPyConnection) -> str:
    cols = {r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema='bronze' and table_name='series'"
    ).fetchall()}
    missing = {"series_instance_uid", "study_instance_uid", "person_key", "modality"} - cols
    if missing:
        raise ValueError(f"table series lacks columns {sorted(missing)} needed for the OMOP export")
    dates = [c for c in ("series_date", "study_date", "acquisition_date") if c in cols]
    if not dates:
        raise ValueError("table series has no series_date/study_date column for image_occurrence_date")
    return f"coalesce({', '.join('s.' + d for d in dates)})"


def build_export(
    con: duckdb.DuckDBPyConnection,
    person_map: pa.Table,
    *,
    id_offset: int = 0,
    concepts: Mapping[str, int] | None = None,
    alg_system: str = "osteolake",
) -> tuple[dict[str, pa.Table], int]:
    """Build the four OMOP tables as Arrow from an open catalog connection.

    Parameters
    ----------
    con
        Connection to ``WH/osteolake.duckdb`` (read-only is enough).
    person_map
        Columns ``person_id`` (int) and ``person_key`` (str).
    id_offset
        Added to every generated id, so exported rows do not collide with the site's own ids.
    concepts
        Optional map from source value (a modality such as ``CT``, a biomarker ``table.column``, or a
        unit) to a standard concept id; unmapped values get concept 0.
    alg_system
        ``image_feature.alg_system`` text.
    """
    missing = {"person_id", "person_key"} - set(person_map.column_names)
    if missing:
        raise ValueError(f"person_map lacks columns {sorted(missing)}")
    concepts = dict(concepts or {})
    con.register("_person_map", person_map.select(["person_id", "person_key"]))
    con.register("_concepts", pa.table({"source_value": list(concepts), "concept_id": list(concepts.values())},
                                       schema=pa.schema([("source_value", pa.string()), ("concept_id", pa.int64())])))
    day = _date_expr(con)
    con.execute(f"""
        create or replace temp table _io as
        select row_number() over (order by s.series_instance_uid) + {int(id_offset)} as image_occurrence_id,
               dense_rank() over (order by s.study_instance_uid) + {int(id_offset)} as procedure_occurrence_id,
               p.person_id, s.series_instance_uid, s.study_instance_uid, s.modality, {day} as day
        from bronze.series s join _person_map p on p.person_key = s.person_key
        where {day} is not null
    """)
    unmapped = con.execute(
        "select count(*) from bronze.series s where s.person_key is null "
        "or s.person_key not in (select person_key from _person_map)").fetchall()[0]
    out: dict[str, pa.Table] = {}
    out["procedure_occurrence"] = con.sql("""
        select procedure_occurrence_id, any_value(person_id) as person_id,
               coalesce(any_value(c.concept_id), 0)::integer as procedure_concept_id, min(day) as procedure_date,
               null::timestamp as procedure_datetime, null::date as procedure_end_date,
               null::timestamp as procedure_end_datetime, 32817 as procedure_type_concept_id,
               null::integer as modifier_concept_id, null::integer as quantity, null::bigint as provider_id,
               null::bigint as visit_occurrence_id, null::bigint as visit_detail_id,
               left(string_agg(distinct modality, '/' order by modality), 50) as procedure_source_value,
               0 as procedure_source_concept_id, null::varchar as modifier_source_value
        from _io left join _concepts c on c.source_value = 'procedure:' || _io.modality
        group by procedure_occurrence_id order by procedure_occurrence_id
    """).to_arrow_table()
    out["image_occurrence"] = con.sql("""
        select image_occurrence_id, person_id, procedure_occurrence_id, null::bigint as visit_occurrence_id,
               null::integer as anatomic_site_concept_id, null::varchar as wadors_uri, null::varchar as local_path,
               day as image_occurrence_date, study_instance_uid as image_study_uid,
               series_instance_uid as image_series_uid, coalesce(c.concept_id, 0)::integer as modality_concept_id
        from _io left join _concepts c on c.source_value = _io.modality order by image_occurrence_id
    """).to_arrow_table()
    parts = []
    for table, column, unit, site in biomarker_columns():
        site_expr = f"b.{quote_ident(site)}::varchar" if site else "null::varchar"
        parts.append(f"""
            select io.image_occurrence_id, io.person_id, io.day,
                   '{table}.{column}' as feature, '{unit}' as unit, {site_expr} as site,
                   b.{quote_ident(column)}::double as value
            from silver.{quote_ident(table)} b join _io io using (series_instance_uid)
            where b.{quote_ident(column)} is not null""")
    if parts:
        con.execute("create or replace temp table _m as select row_number() over "
                    "(order by image_occurrence_id, feature, site) + " + str(int(id_offset)) +
                    " as measurement_id, * from (" + " union all ".join(parts) + ")")
    else:
        con.execute("create or replace temp table _m as select 0::bigint as measurement_id, 0::bigint as "
                    "image_occurrence_id, 0::bigint as person_id, null::date as day, '' as feature, '' as unit, "
                    "'' as site, 0.0 as value where false")
    out["measurement"] = con.sql("""
        select measurement_id, person_id, coalesce(cf.concept_id, 0)::integer as measurement_concept_id,
               day as measurement_date, null::timestamp as measurement_datetime, null::varchar as measurement_time,
               32817 as measurement_type_concept_id, null::integer as operator_concept_id, value as value_as_number,
               null::integer as value_as_concept_id, coalesce(cu.concept_id, 0)::integer as unit_concept_id,
               null::double as range_low, null::double as range_high, null::bigint as provider_id,
               null::bigint as visit_occurrence_id, null::bigint as visit_detail_id,
               left(feature, 50) as measurement_source_value, 0 as measurement_source_concept_id,
               left(unit, 50) as unit_source_value, null::integer as unit_source_concept_id,
               left(site, 50) as value_source_value, image_occurrence_id as measurement_event_id,
               null::integer as meas_event_field_concept_id
        from _m left join _concepts cf on cf.source_value = _m.feature
                left join _concepts cu on cu.source_value = 'unit:' || _m.unit
        order by measurement_id
    """).to_arrow_table()
    out["image_feature"] = con.sql(f"""
        select measurement_id as image_feature_id, person_id, image_occurrence_id,
               coalesce((select concept_id from _concepts where source_value = 'field:measurement.measurement_id'), 0)
                   ::integer as image_feature_event_field_concept_id,
               measurement_id as image_feature_event_id,
               coalesce(cf.concept_id, 0)::integer as image_feature_concept_id,
               32817 as image_feature_type_concept_id, null::integer as image_finding_concept_id,
               null::bigint as image_finding_id, null::integer as anatomic_site_concept_id,
               {_sql_lit(alg_system)} as alg_system, current_localtimestamp()::timestamp as alg_datetime
        from _m left join _concepts cf on cf.source_value = _m.feature order by measurement_id
    """).to_arrow_table()
    return out, int(unmapped[0]) if unmapped else 0


def _sql_lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _pg_url_schema(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    schema = (query.pop("schema", ["cdm"]) or ["cdm"])[0]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", schema):
        raise ValueError(f"--to {url}: schema {schema!r} is not a plain identifier")
    rest = "&".join(f"{k}={v[0]}" for k, v in query.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), schema


def _to_postgres(tables: dict[str, pa.Table], url: str) -> None:
    import psycopg

    conninfo, schema = _pg_url_schema(url)
    with psycopg.connect(conninfo) as pg:
        with pg.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            for name in ORDER:
                cur.execute(f"CREATE TABLE IF NOT EXISTS {schema}.{name} ({OMOP_DDL[name]})")
                tbl = tables[name]
                sink = pa.BufferOutputStream()
                pacsv.write_csv(tbl, sink, pacsv.WriteOptions(include_header=False))
                cols = ", ".join(tbl.column_names)
                with cur.copy(f"COPY {schema}.{name} ({cols}) FROM STDIN WITH (FORMAT csv)") as copy:
                    copy.write(sink.getvalue().to_pybytes())
        pg.commit()


def export_omop(
    catalog: Path,
    person_map: pa.Table,
    to: str | Path,
    *,
    id_offset: int = 0,
    concepts: Mapping[str, int] | None = None,
) -> ExportResult:
    """Export the current snapshot to CSV files in a folder, or into a PostgreSQL OMOP schema.

    Parameters
    ----------
    catalog
        ``WH/osteolake.duckdb``.
    person_map
        ``(person_id, person_key)`` from the site's OMOP person table.
    to
        A folder (``<table>.csv`` files are written, header row, ISO dates) or ``postgresql://...``
        (``?schema=NAME``, default ``cdm``; tables are created if absent and rows appended by ``COPY``).
    """
    con = duckdb.connect(str(catalog), read_only=True)
    try:
        tables, unmapped = build_export(con, person_map, id_offset=id_offset, concepts=concepts)
    finally:
        con.close()
    target = str(to)
    if target.startswith(("postgresql://", "postgres://")):
        _to_postgres(tables, target)
    else:
        folder = Path(to)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ORDER:
            pacsv.write_csv(tables[name], folder / f"{name}.csv")
    return ExportResult({n: tables[n].num_rows for n in ORDER}, unmapped, target)
