"""Print three example analyst queries and their answers from a published warehouse (``make demo``).

Usage: ``python -m flows.demo_queries --warehouse WH``. Opens ``WH/osteolake.duckdb`` read-only, as an analyst
would; never starts Prefect.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import duckdb
from rich.console import Console
from rich.table import Table

QUERIES: tuple[tuple[str, str], ...] = (
    (
        "Series in the index, by modality and orientation",
        "select modality, orientation_class, count(*) as n_series, sum(n_instances) as n_instances\n"
        "from series group by all order by n_series desc",
    ),
    (
        "L1 trabecular attenuation categories (<=110 HU osteoporosis likely, >160 HU normal likely)",
        "select l1_category, count(*) as n_series, round(avg(trabecular_hu_mean), 1) as mean_hu\n"
        "from vertebra_measurements where level = 'L1' group by all order by l1_category",
    ),
    (
        "Outcome models in the registry and their held-out discrimination",
        "select r.outcome, r.model_name, r.status, r.n_valid, r.events_valid,\n"
        "       round(m.estimate, 3) as harrell_c, round(m.ci_lower, 3) as ci_lower, round(m.ci_upper, 3) as ci_upper\n"
        "from model_registry r join model_metrics m using (model_version, outcome)\n"
        "where m.metric = 'c_harrell' and m.term is null order by r.outcome, harrell_c desc",
    ),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warehouse", type=Path, required=True)
    args = parser.parse_args(argv)
    console = Console(width=None if Console().is_terminal else 140)
    catalog = args.warehouse / "osteolake.duckdb"
    if not catalog.exists():
        console.print(f"[red]no catalog at {catalog}: run `osteolake refresh` first[/]")
        return 2
    con = duckdb.connect(str(catalog), read_only=True)
    for title, sql in QUERIES:
        console.rule(title)
        console.print(f"[dim]{sql}[/]")
        try:
            rel = con.sql(sql)
            table = Table(*rel.columns)
            for row in rel.fetchall():
                table.add_row(*("" if v is None else str(v) for v in row))
            console.print(table)
        except duckdb.Error as e:
            console.print(f"[red]query failed: {e}[/]")
            return 1
    console.print(f"\nThe warehouse is at [bold]{args.warehouse.resolve()}[/]; analysts open [bold]{catalog}[/] "
                  f"read-only, e.g. `duckdb -readonly {catalog}` or `osteolake sql --warehouse {args.warehouse} \"...\"`.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
