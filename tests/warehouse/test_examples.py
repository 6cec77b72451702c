"""Every analyst example in warehouse/examples runs against a small warehouse whose answers are known."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from warehouse.catalog import SQL_DIR
from warehouse.lake import Warehouse
from warehouse.query import run_query

EXAMPLES = Path(SQL_DIR).parent / "examples"
D = dt.date


def _series(rows: list[tuple[str, str, str, D, float, str, bool, bool]]) -> pa.Table:
    keys = ("series_instance_uid", "person_key", "modality", "study_date", "age_at_study_years", "patient_sex",
            "has_contrast", "is_dxa")
    cols = {k: [r[i] for r in rows] for i, k in enumerate(keys)}
    cols["study_instance_uid"] = ["st-" + u for u in cols["series_instance_uid"]]
    cols["n_instances"] = [100] * len(rows)
    return pa.table(cols)


SERIES = _series([
    ("s1", "p1", "CT", D(2020, 1, 1), 55.2, "F", False, False),
    ("s2old", "p2", "CT", D(2018, 1, 1), 70.0, "F", False, False),
    ("s2", "p2", "CT", D(2020, 6, 1), 72.4, "F", False, False),
    ("s2dxa", "p2", "DX", D(2019, 1, 1), 71.0, "F", False, True),
    ("s3", "p3", "CT", D(2020, 1, 1), 65.0, "M", False, False),
    ("s4", "p4", "CT", D(2020, 1, 1), 45.0, "M", False, False),
    ("s5nc", "p5", "CT", D(2020, 2, 1), 68.0, "M", False, False),
    ("s5c", "p5", "CT", D(2020, 3, 1), 68.1, "M", True, False),
    ("s6", "p6", "CT", D(2021, 1, 1), 81.0, "F", False, False),
])
# series, level, version, HU
L1 = [("s1", "v1", 90.0), ("s2old", "v1", 80.0), ("s2", "v1", 130.0), ("s3", "v1", 180.0), ("s4", "v1", 95.0),
      ("s5nc", "v1", 99.0), ("s5c", "v1", 150.0), ("s6", "v1", 200.0), ("s6", "v2", 105.0)]
VERTEBRAE = pa.table({
    "series_instance_uid": [r[0] for r in L1] + ["s1"],
    "level": ["L1"] * len(L1) + ["L2"],
    "extractor_version": [r[1] for r in L1] + ["v1"],
    "trabecular_hu_mean": [r[2] for r in L1] + [10.0],
})
BODY = pa.table({
    "series_instance_uid": ["s1", "s3", "s5c", "s4"],
    "level": ["L3"] * 4,
    "extractor_version": ["v1"] * 4,
    "muscle_area_cm2": [100.0, 140.0, 180.0, 120.0],
})
HEIGHTS = pa.table({
    "person_key": ["p1", "p3", "p5", "p5"],
    "factor": ["height_cm"] * 4,
    "start_date": [D(2019, 5, 1), D(2020, 1, 1), D(2010, 1, 1), D(2019, 12, 1)],
    "value_number": [160.0, 180.0, 170.0, 175.0],
    "source_table": ["measurement"] * 4,
    "phenotype": ["height"] * 4,
})


def _cohort_predictions() -> tuple[pa.Table, pa.Table]:
    n = 20
    keys = [f"q{i:02d}" for i in range(1, n + 1)]
    events = {20, 19, 15}
    time = [2.0 if i in events else (3.0 if i == 1 else 10.0) for i in range(1, n + 1)]
    cohort = pa.table({
        "person_key": keys, "index_date": [D(2015, 1, 1)] * n, "index_study_instance_uid": ["x"] * n,
        "age_at_index_years": [60.0] * n, "followup_end_date": [D(2025, 1, 1)] * n,
        "time_mof_years": time, "is_event_mof": [i in events for i in range(1, n + 1)],
        "time_hip_years": [10.0] * n, "is_event_hip": [False] * n, "is_death": [False] * n,
        "censor_reason": ["end_of_observation"] * n, "cohort_definition": ["default"] * n,
    })
    preds = pa.table({
        "person_key": keys, "outcome": ["mof"] * n, "model_version": ["m1"] * n, "horizon_years": [10.0] * n,
        "risk": [i / 100 for i in range(1, n + 1)], "is_high_risk": [False] * n, "is_validation": [True] * n,
    })
    return cohort, preds


def _dq(run: str, failing: set[str]) -> pa.Table:
    checks = ["A", "B", "C"]
    return pa.table({
        "run_time": [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)] * 3, "stage": ["ingest"] * 3,
        "table_name": ["series"] * 3, "check_name": checks, "check_kind": ["schema"] * 3,
        "severity": ["critical", "warning", "warning"], "success": [c not in failing for c in checks],
        "failing_count": [5 if c in failing else 0 for c in checks],
        "details": [f"{c} failed in {run}" if c in failing else None for c in checks],
    })


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("examples") / "wh"
    wh = Warehouse(root)
    b = wh.begin("load")
    b.replace("series", SERIES)
    b.replace("vertebra_measurements", VERTEBRAE)
    b.replace("body_composition", BODY)
    b.replace("risk_factors", HEIGHTS)
    cohort, preds = _cohort_predictions()
    b.replace("cohort", cohort)
    b.replace("predictions", preds)
    b.publish()
    # 31 runs: the oldest (outside the last 30) fails A and B; of the last 30 only r29 and r30 fail A
    for i in range(31):
        failing = {"A", "B"} if i == 0 else ({"A"} if i in (29, 30) else set())
        wh.record_run(f"r{i:02d}", _dq(f"r{i:02d}", failing), {"status": "published"})
    return root


def example(name: str) -> str:
    return (EXAMPLES / f"{name}.sql").read_text()


def test_every_example_is_tested() -> None:
    tested = {"l1_below_100_hu_prevalence", "dxa_candidates", "unrecognised_vertebral_fractures",
              "sarcopenia_smi", "risk_deciles_vs_observed", "dq_failures_last_30_runs"}
    assert {p.stem for p in EXAMPLES.glob("*.sql")} == tested


def test_models_built(warehouse: Path) -> None:
    status = run_query(warehouse, "select model_name, is_built, error from meta.models").to_pylist()
    mine = {"stg_dicom__series", "stg_extract__vertebra_measurements", "stg_extract__body_composition",
            "stg_omop__heights", "l1_density", "dxa_candidates", "sarcopenia", "risk_deciles", "dq_failures_recent"}
    failed = [s for s in status if s["model_name"] in mine and not s["is_built"]]
    assert failed == []


def test_l1_prevalence(warehouse: Path) -> None:
    rows = run_query(warehouse, example("l1_below_100_hu_prevalence")).to_pylist()
    got = {(r["age_band"], r["sex"]): (r["n_persons"], r["n_below_100_hu"], r["prevalence_pct"]) for r in rows}
    assert got == {
        ("<50", "M"): (1, 1, 100.0),   # p4 95 HU
        ("50-59", "F"): (1, 1, 100.0),  # p1 90 HU
        ("60-69", "M"): (2, 1, 50.0),  # p3 180 HU; p5 99 HU (non-contrast preferred over a later contrast CT)
        ("70-79", "F"): (1, 0, 0.0),   # p2: latest CT 130 HU, not the older 80 HU
        ("80+", "F"): (1, 0, 0.0),     # p6: extractor v2 (105 HU) supersedes v1
    }


def test_dxa_candidates(warehouse: Path) -> None:
    rows = run_query(warehouse, example("dxa_candidates")).to_pylist()
    # p2 (130 HU) had a DXA 17 months earlier; p4 is under 50; p3 is above 160 HU
    assert [(r["person_key"], r["priority"], r["l1_trabecular_hu"]) for r in rows] == [
        ("p1", "high", 90.0), ("p5", "high", 99.0), ("p6", "high", 105.0)]


def test_sarcopenia(warehouse: Path) -> None:
    rows = {r["sex"]: r for r in run_query(warehouse, example("sarcopenia_smi")).to_pylist()}
    assert rows["F"]["n_persons"] == 1 and rows["F"]["n_low_smi"] == 0  # 100 / 1.60^2 = 39.1 >= 38.5
    assert rows["M"]["n_persons"] == 2 and rows["M"]["n_low_smi"] == 1  # 140/1.80^2 = 43.2 < 52.4
    # p5: height closest to the CT (175 cm, not 170): 180/1.75^2 = 58.78
    assert rows["M"]["mean_smi_cm2_m2"] == pytest.approx(round((140 / 1.8**2 + 180 / 1.75**2) / 2, 1))
    detail = run_query(warehouse, "select person_key, height_cm, smi_cm2_m2 from sarcopenia order by 1").to_pylist()
    assert [(d["person_key"], d["height_cm"]) for d in detail] == [("p1", 160.0), ("p3", 180.0), ("p5", 175.0)]
    assert detail[2]["smi_cm2_m2"] == pytest.approx(180 / 1.75**2, rel=1e-9)


def test_risk_deciles(warehouse: Path) -> None:
    rows = {r["risk_decile"]: r for r in run_query(warehouse, example("risk_deciles_vs_observed")).to_pylist()}
    assert sorted(rows) == list(range(1, 11)) and all(r["n_persons"] == 2 for r in rows.values())
    assert rows[10]["n_events"] == 2 and rows[10]["observed_risk"] == 1.0
    assert rows[10]["mean_predicted_risk"] == pytest.approx(0.195)
    assert rows[8]["n_events"] == 1 and rows[8]["observed_risk"] == 0.5
    assert rows[1]["n_censored_early"] == 1 and rows[1]["observed_risk"] == 0.0
    assert sum(r["n_events"] for r in rows.values()) == 3


def test_dq_failures_last_30_runs(warehouse: Path) -> None:
    rows = run_query(warehouse, example("dq_failures_last_30_runs")).to_pylist()
    assert [(r["check_name"], r["n_runs_failed"], r["n_runs_checked"]) for r in rows] == [("A", 2, 30)]
    assert rows[0]["last_details"] == "A failed in r30"


def test_unrecognised_vertebral_fractures(warehouse: Path) -> None:
    if not (SQL_DIR / "marts" / "unrecognised_vertebral_fracture.sql").is_file():
        pytest.skip("marts/unrecognised_vertebral_fracture.sql (the fragility engineer's model) is not written yet")
    built = run_query(warehouse, "select is_built, error from meta.models "
                                 "where model_name = 'unrecognised_vertebral_fracture'").to_pylist()
    assert built and built[0]["is_built"], built
    result = run_query(warehouse, example("unrecognised_vertebral_fractures"))
    assert result.num_rows == 0  # no vertebral_fractures rows in this warehouse
