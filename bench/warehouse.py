"""Warehouse at scale: build a tabular-only synthetic warehouse, time the analyst examples in DuckDB and PostgreSQL.

Usage: ``python -m bench.warehouse [--persons 1000000] [--repeats 5] [--out DIR] [--no-postgres]``

At the default size: 1M persons, 3M studies, 10M series (40% CT with an L1 density row and an L3 body
composition row), heights, a cohort with predictions for two outcomes (2M prediction rows), and 30
recorded runs of 100 checks each. Rows go through the real write path (``SnapshotBuilder.append`` ->
conform -> Parquet) and one publish, which builds the catalog and materialises the marts; the runs go
through ``Warehouse.record_run`` (which folds the run log and copies it into the catalog).

Each example query in ``warehouse/examples/`` is then timed in DuckDB (read-only catalog) and in
PostgreSQL loaded by ``COPY`` with the same rows: the materialised marts the examples read
(``l1_density``, ``dxa_candidates``, ``sarcopenia``), and for the two examples that DuckDB computes at
query time from base tables, those base tables (``predictions`` and ``cohort`` for the risk deciles,
``dq_results`` and ``run_summaries`` for the data-quality failures), with the view's SQL translated to
PostgreSQL's dialect below (same semantics). Prints the median per query and the ratio PostgreSQL /
DuckDB, and ends with one line ``warehouse: key=value ...``. Run it niced on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

from warehouse.catalog import SQL_DIR
from warehouse.lake import Warehouse

EXAMPLES = SQL_DIR.parent / "examples"
CHUNK = 1_000_000

# PostgreSQL translations of the examples (median -> percentile_cont, round on numeric).
PG_EXAMPLES = {
    "l1_below_100_hu_prevalence": """
        select age_band, sex, count(*) as n_persons, count(*) filter (where is_below_100_hu) as n_below_100_hu,
               round((100.0 * count(*) filter (where is_below_100_hu) / count(*))::numeric, 1) as prevalence_pct,
               round((percentile_cont(0.5) within group (order by l1_trabecular_hu))::numeric, 1) as median_l1_hu
        from l1_density group by age_band, sex order by age_band, sex""",
    "dxa_candidates": """
        select priority, person_key, ct_study_date, round(age_at_study_years::numeric, 0) as age_years, sex,
               round(l1_trabecular_hu::numeric, 1) as l1_trabecular_hu, is_contrast
        from dxa_candidates order by priority, l1_trabecular_hu, person_key""",
    "sarcopenia_smi": """
        select sex, count(*) as n_persons, count(*) filter (where is_low_smi) as n_low_smi,
               round((100.0 * count(*) filter (where is_low_smi) / count(*))::numeric, 1) as low_smi_pct,
               round(avg(smi_cm2_m2)::numeric, 1), round(avg(muscle_area_l3_cm2)::numeric, 1),
               round(avg(height_cm)::numeric, 1)
        from sarcopenia group by sex order by sex""",
    "risk_deciles_vs_observed": """
        with scored as (
            select p.outcome, p.person_key, p.risk, p.horizon_years,
                   case p.outcome when 'hip' then c.time_hip_years else c.time_mof_years end as time_years,
                   case p.outcome when 'hip' then c.is_event_hip else c.is_event_mof end as is_event
            from predictions p join cohort c using (person_key) where p.risk is not null),
        ranked as (select *, ntile(10) over (partition by outcome order by risk, person_key) as risk_decile
                   from scored),
        classified as (
            select *, coalesce(is_event and time_years <= horizon_years, false) as is_event_in_horizon,
                   coalesce(time_years >= horizon_years, false)
                       or coalesce(is_event and time_years <= horizon_years, false) as is_known_at_horizon
            from ranked),
        final as (
            select outcome, risk_decile, count(*) as n_persons, avg(risk) as mean_predicted_risk,
                   sum(case when is_event_in_horizon then 1 else 0 end) as n_events,
                   sum(case when is_known_at_horizon then 0 else 1 end) as n_censored_early,
                   sum(case when is_event_in_horizon then 1 else 0 end)::double precision
                       / nullif(sum(case when is_known_at_horizon then 1 else 0 end), 0) as observed_risk
            from classified group by outcome, risk_decile)
        select outcome, risk_decile, n_persons, round(mean_predicted_risk::numeric, 4), n_events, n_censored_early,
               round(observed_risk::numeric, 4) from final order by outcome, risk_decile""",
    "dq_failures_last_30_runs": """
        with runs as (select run_id, max(recorded_at) as recorded_at from run_summaries group by run_id
                      order by recorded_at desc limit 30),
             results as (select d.*, r.recorded_at from dq_results d join runs r using (run_id))
        select min(severity) as severity, stage, table_name, check_name,
               count(distinct run_id) filter (where not success) as n_runs_failed,
               count(distinct run_id) as n_runs_checked, max(recorded_at) filter (where not success) as last_failed_at
        from results group by stage, table_name, check_name having count(*) filter (where not success) > 0
        order by severity, n_runs_failed desc, table_name, check_name""",
}
PG_TABLES = ("l1_density", "dxa_candidates", "sarcopenia", "predictions", "cohort", "dq_results", "run_summaries")


def _gen(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    return con.sql(sql).to_arrow_table()


def build(root: Path, persons: int) -> dict[str, float]:
    """Write the synthetic rows through the warehouse API and publish; returns timings (s)."""
    con = duckdb.connect()
    con.execute("select setseed(0.42)").fetchall()
    studies, series = 3 * persons, 10 * persons
    wh = Warehouse(root)
    b = wh.begin("bench")
    t0 = time.perf_counter()
    for start in range(0, series, CHUNK):
        n = min(CHUNK, series - start)
        # series i belongs to study i % studies, study j to person j % persons; 40% are CT
        b.append("series", _gen(con, f"""
            select 'se' || i as series_instance_uid, 'st' || (i % {studies}) as study_instance_uid,
                   'p' || (i % {studies}) % {persons} as person_key,
                   case when i % 5 < 2 then 'CT' when i % 5 = 2 then 'DX' else 'MR' end as modality,
                   date '2010-01-01' + cast(((i % {studies}) * 7919) % 5000 as integer) as study_date,
                   40 + ((i % {studies}) % {persons}) % 50 + 0.5 as age_at_study_years,
                   case when ((i % {studies}) % {persons}) % 2 = 0 then 'F' else 'M' end as patient_sex,
                   i % 10 = 2 as is_dxa, i % 7 = 0 as has_contrast, 100 as n_instances
            from range({start}, {start + n}) t(i)"""))
        ct = f"from range({start}, {start + n}) t(i) where i % 5 < 2"
        b.append("vertebra_measurements", _gen(con, f"""
            select 'se' || i as series_instance_uid, 'L1' as level, 'v1' as extractor_version,
                   60 + random() * 160 as trabecular_hu_mean {ct}"""))
        b.append("body_composition", _gen(con, f"""
            select 'se' || i as series_instance_uid, 'L3' as level, 'v1' as extractor_version,
                   80 + random() * 100 as muscle_area_cm2 {ct}"""))
    b.append("risk_factors", _gen(con, f"""
        select 'p' || i as person_key, 'height_cm' as factor, date '2012-01-01' + cast(i % 3000 as integer) as start_date,
               150 + random() * 40 as value_number, 'measurement' as source_table, 'height' as phenotype
        from range({persons}) t(i)"""))
    b.append("cohort", _gen(con, f"""
        select 'p' || i as person_key, date '2012-01-01' as index_date, 'x' as index_study_instance_uid,
               60.0 as age_at_index_years, date '2022-01-01' as followup_end_date,
               random() * 12 as time_mof_years, random() < 0.1 as is_event_mof, random() * 12 as time_hip_years,
               random() < 0.03 as is_event_hip, false as is_death, 'end_of_observation' as censor_reason,
               'default' as cohort_definition
        from range({persons}) t(i)"""))
    b.append("predictions", _gen(con, f"""
        select 'p' || i as person_key, o as outcome, 'm1' as model_version, 10.0 as horizon_years,
               random() * 0.4 as risk, false as is_high_risk, true as is_validation
        from range({persons}) t(i), (values ('mof'), ('hip')) v(o)"""))
    t_write = time.perf_counter() - t0
    t0 = time.perf_counter()
    b.publish({"bench": True})
    t_publish = time.perf_counter() - t0
    record = []
    for r in range(30):
        dq = _gen(con, f"""
            select 'r{r:02d}' as run_id, now() as run_time, 'extract' as stage, 't' || (k % 20) as table_name,
                   'check' || k as check_name, 'schema' as check_kind,
                   case when k % 3 = 0 then 'critical' else 'warning' end as severity,
                   random() > 0.05 as success, 0::bigint as failing_count
            from range(100) t(k)""")
        t0 = time.perf_counter()
        wh.record_run(f"r{r:02d}", dq, {"status": "published"})
        record.append(time.perf_counter() - t0)
    n_log = sum(1 for _ in (root / "runs").rglob("*.parquet"))
    return {"write_s": t_write, "publish_s": t_publish, "record_run_s": statistics.median(record),
            "run_log_files": float(n_log)}


def time_duckdb(root: Path, repeats: int) -> dict[str, float]:
    out = {}
    con = duckdb.connect(str(root / "osteolake.duckdb"), read_only=True)
    try:
        for path in sorted(EXAMPLES.glob("*.sql")):
            sql = path.read_text()
            try:
                con.execute(sql).fetchall()
            except duckdb.Error as e:
                print(f"  duckdb {path.stem}: skipped ({str(e).splitlines()[0]})")
                continue
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                con.execute(sql).fetchall()
                times.append(time.perf_counter() - t0)
            out[path.stem] = statistics.median(times)
    finally:
        con.close()
    return out


def time_postgres(root: Path, repeats: int, work: Path) -> dict[str, float]:
    import psycopg

    from tests.services.postgres import running_postgres

    out = {}
    con = duckdb.connect(str(root / "osteolake.duckdb"), read_only=True)
    with running_postgres(work / "pg") as url, psycopg.connect(url, autocommit=True) as pg:
        for name in PG_TABLES:
            tbl = con.sql(f"select * from {name}").to_arrow_table()
            cols = []
            for f in tbl.schema:
                from schemas.ddl import postgres_type

                cols.append(f'"{f.name}" {postgres_type(f.type)}')
            pg.execute(f"create table {name} ({', '.join(cols)})")
            sink = pa.BufferOutputStream()
            pacsv.write_csv(tbl, sink, pacsv.WriteOptions(include_header=False))
            with pg.cursor().copy(f"copy {name} from stdin with (format csv)") as cp:
                cp.write(sink.getvalue().to_pybytes())
            pg.execute(f"analyze {name}")
        for name, sql in PG_EXAMPLES.items():
            pg.execute(sql).fetchall()
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                pg.execute(sql).fetchall()
                times.append(time.perf_counter() - t0)
            out[name] = statistics.median(times)
    con.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--persons", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=None, help="warehouse folder (default: a temp folder)")
    p.add_argument("--no-postgres", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-wh-") as tmp:
        root = args.out or Path(tmp) / "wh"
        timings = build(root, args.persons)
        print(f"built {args.persons} persons / {3 * args.persons} studies / {10 * args.persons} series: "
              f"write {timings['write_s']:.1f} s, publish (catalog + marts) {timings['publish_s']:.1f} s, "
              f"record_run median {timings['record_run_s']:.2f} s, run log {timings['run_log_files']:.0f} files "
              f"after 30 runs")
        duck = time_duckdb(root, args.repeats)
        pg = {} if args.no_postgres else time_postgres(root, args.repeats, Path(tmp))
        worst = max(duck.values()) if duck else float("nan")
        ratios = []
        per_query = []
        for name, t in duck.items():
            line = f"  {name:32s} duckdb {t * 1000:8.1f} ms"
            if name in pg:
                ratios.append(pg[name] / t)
                per_query.append(f"{name}={pg[name] / t:.2f}")
                line += f"   postgres {pg[name] * 1000:8.1f} ms   ratio {pg[name] / t:6.1f}x"
            print(line)
        min_ratio = min(ratios) if ratios else float("nan")
        print(f"warehouse: persons={args.persons} series={10 * args.persons} publish_s={timings['publish_s']:.1f} "
              f"duckdb_max_median_s={worst:.3f} pg_over_duckdb_min_ratio={min_ratio:.2f} "
              f"record_run_s={timings['record_run_s']:.2f} queries={len(duck)} " + " ".join(f"ratio_{q}" for q in per_query))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
