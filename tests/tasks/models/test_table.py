"""``fit_table`` and ``osteolake models fit`` on tables with known coefficients."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from flows.cli.models import register
from tasks.models.table import fit_table


def _survival_table(n: int = 800, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.random(n) < 0.4
    group = rng.choice(["a", "b", "c"], size=n)
    lp = 0.7 * x1 - 0.5 * x2 + np.where(group == "c", 0.6, 0.0)
    t = rng.exponential(1 / (0.1 * np.exp(lp)))
    c = rng.uniform(1, 12, n)
    y = rng.random(n) < 1 / (1 + np.exp(-(-0.5 + 1.0 * x1 - 0.8 * x2)))
    return pl.DataFrame({"x1": x1, "x2": x2, "group": group, "time": np.minimum(t, c), "event": (t <= c).astype(int),
                         "y": y})


def test_cox_recovers_coefficients() -> None:
    out = fit_table(_survival_table(), "event", ["x1", "x2", "group"], time="time", categorical=["group"])
    coefs = {c["name"]: c for c in out["coefficients"]}
    assert set(coefs) == {"x1", "x2", "group=b", "group=c"}
    for name, truth in (("x1", 0.7), ("x2", -0.5), ("group=b", 0.0), ("group=c", 0.6)):
        assert abs(coefs[name]["estimate"] - truth) < 3 * coefs[name]["standard_error"], name
    assert out["model"] == "cox" and 0.65 < out["metrics"]["c_index"] < 0.8
    assert out["metrics"]["calibration_slope"] == pytest.approx(1.0, abs=0.2)
    assert out["metrics"]["calibration_intercept"] == pytest.approx(0.0, abs=0.15)


def test_logistic_recovers_coefficients() -> None:
    out = fit_table(_survival_table(1500, 1), "y", ["x1", "x2"])
    coefs = {c["name"]: c for c in out["coefficients"]}
    for name, truth in (("intercept", -0.5), ("x1", 1.0), ("x2", -0.8)):
        assert abs(coefs[name]["estimate"] - truth) < 3 * coefs[name]["standard_error"], name
    m = out["metrics"]
    assert set(m) >= {"auc", "brier", "calibration_slope", "calibration_intercept"}
    assert m["calibration_slope"] == pytest.approx(1.0, abs=0.15) and abs(m["calibration_intercept"]) < 0.15


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"outcome": "event", "predictors": ["nope"], "time": "time"}, r"no column\(s\) \['nope'\]"),
        ({"outcome": "event", "predictors": ["group"], "time": "time"}, "not numeric.*--categorical group"),
        ({"outcome": "never", "predictors": ["x1"], "time": "time"}, "no events"),
        ({"outcome": "x1", "predictors": ["x2"]}, "must be 0/1"),
        ({"outcome": "event", "predictors": ["x1"], "time": "neg"}, "values <= 0"),
    ],
)
def test_clear_errors(kwargs: dict, match: str) -> None:
    df = _survival_table(100).with_columns(never=pl.lit(0), neg=pl.col("time") - 5)
    with pytest.raises(ValueError, match=match):
        fit_table(df, **kwargs)


def test_cli_json_contract(tmp_path: Path) -> None:
    df = _survival_table(300, 2)
    df.write_csv(tmp_path / "t.csv")
    df.write_parquet(tmp_path / "t.parquet")
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    r = runner.invoke(app, ["models", "fit", "--table", str(tmp_path / "t.csv"), "--outcome", "event", "--time", "time",
                            "--predictors", "x1,x2,group", "--categorical", "group", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert {"name", "estimate", "standard_error"} <= set(out["coefficients"][0])
    assert {"c_index", "brier", "calibration_slope", "calibration_intercept"} <= set(out["metrics"])
    r = runner.invoke(app, ["models", "fit", "--table", str(tmp_path / "t.parquet"), "--outcome", "y",
                            "--predictors", "x1,x2", "--json"])
    assert r.exit_code == 0 and "auc" in json.loads(r.stdout)["metrics"]
    r = runner.invoke(app, ["models", "fit", "--table", str(tmp_path / "t.csv"), "--outcome", "event",
                            "--predictors", "x1,missing_col"])
    assert r.exit_code == 2 and "missing_col" in " ".join(r.output.split())
    r = runner.invoke(app, ["models", "fit", "--table", str(tmp_path / "t.txt"), "--outcome", "event", "--predictors", "x1"])
    assert r.exit_code == 2 and "file not found" in " ".join(r.output.split())


def test_models_fit_does_not_start_prefect(tmp_path: Path) -> None:
    _survival_table(100).write_csv(tmp_path / "t.csv")
    code = (
        "import sys, typer\n"
        "from typer.testing import CliRunner\n"
        "from flows.cli.models import register\n"
        "app = typer.Typer(); register(app)\n"
        f"r = CliRunner().invoke(app, ['models', 'fit', '--table', {str(tmp_path / 't.csv')!r}, '--outcome', 'y',"
        " '--predictors', 'x1', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'prefect' not in sys.modules, 'prefect was imported'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[3])
    assert res.returncode == 0, res.stderr
