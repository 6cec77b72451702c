"""``osteolake models``: outcome models from the command line (``models fit`` on any table).

``models fit`` never starts Prefect: it reads one CSV/Parquet file, fits and cross-validates, and prints.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from flows.cli.common import console, fail


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def register(app: typer.Typer) -> None:
    """Add the ``models`` command group to ``app``."""
    models_app = typer.Typer(help="Fit and validate fracture-risk outcome models.", no_args_is_help=True)

    @models_app.command("fit")
    def fit(
        table: Path = typer.Option(..., "--table", help="CSV or Parquet file, one row per person"),
        outcome: str = typer.Option(..., "--outcome", help="event (with --time) or binary outcome column, 0/1"),
        predictors: str = typer.Option(..., "--predictors", help="comma-separated predictor columns"),
        time: str | None = typer.Option(None, "--time", help="follow-up time column: fits a Cox model"),
        categorical: str | None = typer.Option(None, "--categorical", help="comma-separated categorical predictors"),
        horizon: float | None = typer.Option(None, "--horizon", help="time for Cox risk/Brier/calibration (default: median)"),
        folds: int = typer.Option(5, "--folds", min=2, help="cross-validation folds for the metrics"),
        seed: int = typer.Option(0, "--seed", help="seed of the fold assignment"),
        as_json: bool = typer.Option(False, "--json", help="print one JSON object (coefficients, metrics)"),
    ) -> None:
        """Fit and validate a Cox (with --time) or logistic model on any table."""
        from tasks.models.table import fit_table

        try:
            result = fit_table(
                table, outcome, _split(predictors), time=time, categorical=_split(categorical),
                horizon=horizon, folds=folds, seed=seed,
            )
        except ValueError as e:
            fail(str(e))
        if as_json:
            typer.echo(json.dumps(result, indent=2))
            return
        ratio = "hazard_ratio" if result["model"] == "cox" else "odds_ratio"
        console.print(
            f"[bold]{result['model']}[/] model of {outcome!r}: {result['n']} rows "
            f"({result['n_excluded_missing']} excluded for missing values), {result['events']} events"
        )
        console.print(f"{'term':<32} {'estimate':>9} {'SE':>8} {ratio:>13}")
        for c in result["coefficients"]:
            console.print(f"{c['name']:<32} {c['estimate']:>9.4f} {c['standard_error']:>8.4f} {c[ratio]:>13.3f}")
        console.print(f"metrics ({result['validation']}):")
        for k, v in result["metrics"].items():
            console.print(f"  {k}: {'n/a' if v is None else f'{v:.4f}'}")

    app.add_typer(models_app, name="models")
