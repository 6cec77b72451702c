"""flows.quality and `osteolake dq` on a real warehouse folder (no Prefect run: plain functions)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner

from flows.quality import check_current, outcome_summary, report_path, run_quality, write_report
from schemas import get_table
from tasks.quality import verdict
from warehouse.lake import Warehouse


def _persons(keys: list[str]) -> pa.Table:
    n = len(keys)
    return get_table("omop_persons").conform(pa.table({
        "person_key": keys, "is_female": [True] * n, "site": ["A"] * n,
        "observation_start_date": [date(2010, 1, 1)] * n, "observation_end_date": [date(2026, 6, 30)] * n,
        "death_date": pa.nulls(n, pa.date32()), "n_observation_periods": pa.array([1] * n, pa.int32()),
    }))


def _cohort(keys: list[str]) -> pa.Table:
    n = len(keys)
    return get_table("cohort").conform(pa.table({
        "person_key": keys, "index_date": [date(2015, 3, 1)] * n,
        "index_study_instance_uid": [f"1.2.{i}" for i in range(n)], "age_at_index_years": [67.5] * n,
        "followup_end_date": [date(2026, 6, 30)] * n, "time_mof_years": [11.3] * n,
        "is_event_mof": [False] * n, "time_hip_years": [11.3] * n, "is_event_hip": [False] * n,
        "is_death": [False] * n, "censor_reason": ["data_cutoff"] * n, "cohort_definition": ["default"] * n,
    }))


def _dq_app(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    from flows.cli import common, dq

    monkeypatch.setattr(common.console, "width", 200)  # rich sizes the shared console once, at import

    app = typer.Typer()
    dq.register(app)

    @app.command()
    def _noop() -> None:  # a second command keeps typer in multi-command mode (`app dq ...`)
        pass

    return app


def test_stage_checks_block_on_an_orphan_and_dq_prints_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [f"{i:032x}" for i in range(4)]
    wh = Warehouse(tmp_path / "wh")
    b = wh.begin("run-1")
    b.replace("omop_persons", _persons(keys[:3]))
    first = run_quality(b, "clinical")
    assert {r.table for r in first} == {"omop_persons"} and all(r.success for r in first)
    b.replace("cohort", _cohort(keys))                      # keys[3] has no omop_persons row
    second = run_quality(b, "cohort")                       # only the newly written table is checked
    assert {r.table for r in second} == {"cohort"}
    assert run_quality(b, "models") == []
    orphan = [r for r in second if r.check == "references(person_key->omop_persons)"]
    assert len(orphan) == 1 and not orphan[0].success and orphan[0].failing_count == 1

    outcome = verdict(first + second, "run-1")
    assert not outcome.passed
    assert outcome.critical_failures == [
        "cohort/cohort: references(person_key->omop_persons) — 1 row(s) (1 distinct key(s)) of cohort have "
        "no omop_persons row"]
    path = write_report(wh.root, outcome, "run-1")
    assert path == report_path(wh.root, "run-1") and path.read_text().startswith("<!DOCTYPE html>")
    wh.record_run("run-1", outcome.results, {"status": "blocked", "is_published": False,
                                             "report_path": str(path)})
    assert wh.current() is None                              # nothing was published

    res = CliRunner().invoke(_dq_app(monkeypatch), ["dq", "--warehouse", str(wh.root)])
    assert res.exit_code == 0, res.output
    assert "run-1" in res.output and "references(person_key->omop_persons)" in res.output
    assert "1 critical failures" in res.output and "publish blocked" in res.output
    assert f"report: {path}" in res.output
    assert keys[3] not in res.output


def test_check_current_snapshot_and_dq_picks_the_latest_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [f"{i:032x}" for i in range(3)]
    wh = Warehouse(tmp_path / "wh")
    b = wh.begin("seed")
    b.replace("omop_persons", _persons(keys))
    b.replace("cohort", _cohort(keys))
    b.publish({})
    outcome, path = check_current(wh.root, "recheck-1")
    assert outcome.passed, outcome.critical_failures
    summary = outcome_summary(outcome, path)
    assert summary["checks"] == outcome.results.num_rows > 20 and summary["failed"] == 0
    tables = set(outcome.results.column("table_name").to_pylist())
    assert {"cohort", "omop_persons", "series", "vertebra_measurements"} <= tables  # every declared table
    assert "dq_results" not in tables

    app = _dq_app(monkeypatch)
    res = CliRunner().invoke(app, ["dq", "--warehouse", str(wh.root), "--all"])
    assert res.exit_code == 0, res.output
    assert "recheck-1" in res.output and "0 critical failures" in res.output and "pass" in res.output
    bad = CliRunner().invoke(app, ["dq", "--warehouse", str(wh.root), "--run", "nope"])
    assert bad.exit_code == 1 and "recheck-1" in bad.output
    empty = CliRunner().invoke(app, ["dq", "--warehouse", str(tmp_path)])
    assert empty.exit_code == 1
