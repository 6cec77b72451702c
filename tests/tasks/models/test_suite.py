"""The model suite on the synthetic population: contracts of the outputs and recovery of the planted signal."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from lifelines.utils import concordance_index

from bench._cohort_from_population import SyntheticCohort, build
from schemas.tables.models import MODEL_METRICS, MODEL_REGISTRY, PREDICTIONS
from tasks.models.config import DeepConfig, ModelConfig
from tasks.models.deep import deep_risk_score, load_deep
from tasks.models.suite import ModelRun, fit_and_validate


@pytest.fixture(scope="module")
def small() -> tuple[SyntheticCohort, ModelRun]:
    sc = build(200, 11)
    cfg = ModelConfig(n_bootstrap=30, deep=DeepConfig(epochs=30), data_snapshot_id="snap-1",
                      cohort_definition_hash="abc123")
    return sc, fit_and_validate(sc.cohort, sc.features, cfg, images=sc.images)


def test_outputs_conform_to_their_schemas(small: tuple[SyntheticCohort, ModelRun]) -> None:
    _, run = small
    for table, decl in ((run.registry, MODEL_REGISTRY), (run.metrics, MODEL_METRICS), (run.predictions, PREDICTIONS)):
        assert table.schema.equals(decl.arrow_schema())
        for key in decl.key:
            if not decl.column(key).nullable:
                assert table.column(key).null_count == 0
        keys = pl.from_arrow(table.select(list(decl.key)))
        assert isinstance(keys, pl.DataFrame)
        assert not keys.is_duplicated().any(), decl.name


def test_registry_has_every_model_and_one_production_per_outcome(small: tuple[SyntheticCohort, ModelRun]) -> None:
    sc, run = small
    reg = pl.from_arrow(run.registry)
    assert isinstance(reg, pl.DataFrame)
    assert reg.height == 8  # 4 families x 2 outcomes
    assert set(reg["model_name"]) == {"conventional", "conventional_bmd", "opportunistic", "deep"}
    for o in ("mof", "hip"):
        assert reg.filter((pl.col("outcome") == o) & (pl.col("status") == "production")).height == 1
    assert set(reg["data_snapshot_id"]) == {"snap-1"} and set(reg["cohort_definition_hash"]) == {"abc123"}
    assert (reg["n_train"] + reg["n_valid"] == sc.cohort.height).all()
    events = int((sc.cohort["is_event_mof"] & (sc.cohort["time_mof_years"] <= 10)).sum())
    mof = reg.filter(pl.col("outcome") == "mof")
    assert (mof["events_train"] + mof["events_valid"] == events).all()
    assert "fn_tscore" in json.loads(mof.filter(pl.col("model_name") == "conventional_bmd")["predictors_json"][0])


def test_predictions_score_every_person_with_the_production_model(small: tuple[SyntheticCohort, ModelRun]) -> None:
    sc, run = small
    pred = pl.from_arrow(run.predictions)
    reg = pl.from_arrow(run.registry)
    assert isinstance(pred, pl.DataFrame) and isinstance(reg, pl.DataFrame)
    assert pred.height == 2 * sc.cohort.height
    prod = set(reg.filter(pl.col("status") == "production")["model_version"])
    assert set(pred["model_version"]) == prod
    assert pred["risk"].min() >= 0 and pred["risk"].max() <= 1
    thr = pred.select(pl.when(pl.col("outcome") == "mof").then(0.2).otherwise(0.03))[:, 0]
    assert (pred["is_high_risk"] == (pred["risk"] >= thr)).all()
    assert pred.group_by("outcome").agg(pl.col("person_key").n_unique())["person_key"].to_list() == [200, 200]


def test_reported_c_index_matches_lifelines_on_the_validation_set(small: tuple[SyntheticCohort, ModelRun]) -> None:
    sc, run = small
    pred = pl.from_arrow(run.predictions)
    assert isinstance(pred, pl.DataFrame)
    mof = pred.filter((pl.col("outcome") == "mof") & pl.col("is_validation")).join(sc.cohort, on="person_key")
    t = np.minimum(mof["time_mof_years"].to_numpy(), 10.0)
    e = (mof["is_event_mof"] & (mof["time_mof_years"] <= 10)).to_numpy()
    ref = concordance_index(t, -mof["linear_predictor"].to_numpy(), e)
    version = mof["model_version"][0]
    reg = pl.from_arrow(run.registry)
    assert isinstance(reg, pl.DataFrame)
    name = reg.filter(pl.col("model_version") == version)["model_name"][0]
    assert run.c_index("mof", name) == pytest.approx(ref, abs=1e-9)


def test_metrics_have_bootstrap_intervals_and_nri_parts(small: tuple[SyntheticCohort, ModelRun]) -> None:
    _, run = small
    met = pl.from_arrow(run.metrics)
    assert isinstance(met, pl.DataFrame)
    names = set(met["metric"])
    for k in ("c_harrell", "c_uno", "auc_td", "brier", "calibration_slope", "calibration_intercept", "oe_ratio",
              "nri_events", "nri_nonevents", "net_benefit", "hazard_ratio_per_sd", "calibration_observed"):
        assert k in names, k
    c = met.filter(pl.col("metric") == "c_harrell")
    assert (c["ci_lower"] <= c["estimate"]).all() and (c["estimate"] <= c["ci_upper"]).all()
    assert (c["n_bootstrap"] >= 25).all()
    nri = met.filter(pl.col("metric") == "nri_events")
    assert set(nri["threshold"]) == {0.2, 0.03}


def test_model_cards_and_deep_artifact(small: tuple[SyntheticCohort, ModelRun]) -> None:
    sc, run = small
    reg = pl.from_arrow(run.registry)
    assert isinstance(reg, pl.DataFrame)
    assert set(run.model_cards) == set(reg["model_version"])
    card = run.model_cards[reg.filter(pl.col("model_name") == "conventional")["model_version"][0]]
    for section in ("1. Model", "2. Data", "Cohort attrition", "3. Predictors", "4. Performance", "5. Limitations"):
        assert section in card
    assert card.count("data:image/png;base64,iVBOR") == 2
    assert "FRAX is proprietary" in card
    deep = reg.filter((pl.col("model_name") == "deep") & (pl.col("outcome") == "mof"))
    weights = run.artifacts[deep["artifact_key"][0]]
    fit = load_deep(weights)
    key = sc.cohort["person_key"][0]
    s1 = deep_risk_score(sc.images[key], weights)
    assert s1 == pytest.approx(deep_risk_score(sc.images[key], fit), abs=1e-9)
    vol = np.repeat(sc.images[key][:, :, None], 5, axis=2)  # a (z, y, x) volume: mid-sagittal plane is used
    assert deep_risk_score(vol, fit) == pytest.approx(s1, abs=1e-6)


def test_deep_model_is_skipped_without_images() -> None:
    sc = build(120, 12, with_images=False)
    run = fit_and_validate(sc.cohort, sc.features, ModelConfig(outcomes=("mof",), n_bootstrap=0, split="site"))
    reg = pl.from_arrow(run.registry)
    assert isinstance(reg, pl.DataFrame)
    assert "deep" not in set(reg["model_name"])
    assert any("deep: skipped" in n for n in run.notes)
    assert reg["split"][0].startswith("site:")


def test_planted_signal_is_recovered_at_scale() -> None:
    """2000 persons, Cox models only: coefficients near the hazard model, (b) > (a), near the oracle C."""
    sc = build(2000, 21, with_images=False)
    cfg = ModelConfig(outcomes=("mof",), n_bootstrap=0, penalizer=0.0, models=("conventional_bmd", "opportunistic"))
    run = fit_and_validate(sc.cohort, sc.features, cfg)
    c_a, c_b = run.c_index("mof", "conventional_bmd"), run.c_index("mof", "opportunistic")
    pred = pl.from_arrow(run.predictions)
    assert isinstance(pred, pl.DataFrame)
    val = pred.filter(pl.col("is_validation")).join(sc.cohort, on="person_key")
    t = np.minimum(val["time_mof_years"].to_numpy(), 10.0)
    e = (val["is_event_mof"] & (val["time_mof_years"] <= 10)).to_numpy()
    oracle = concordance_index(t, -np.array([sc.lp[k] for k in val["person_key"]]), e)
    assert c_b > c_a
    assert abs(max(c_a, c_b) - oracle) < 0.03
    reg = pl.from_arrow(run.registry)
    assert isinstance(reg, pl.DataFrame)
    coefs = {c["name"]: c for c in json.loads(reg.filter(pl.col("model_name") == "opportunistic")["coefficients_json"][0])}
    for name, truth in (("l1_trabecular_hu", -0.60 / 45.0), ("age_years", 0.04), ("muscle_hu_l3", -0.03)):
        c = coefs[name]
        est, se = c["estimate"] / c["scale"], c["standard_error"] / c["scale"]
        assert abs(est - truth) < 3.5 * se, (name, est, se, truth)


def test_bad_inputs_are_named() -> None:
    sc = build(60, 13, with_images=False)
    with pytest.raises(ValueError, match="time_hip_years"):
        fit_and_validate(sc.cohort.drop("time_hip_years"), sc.features, ModelConfig())
    with pytest.raises(ValueError, match="duplicated person_key"):
        fit_and_validate(pl.concat([sc.cohort, sc.cohort[:1]]), sc.features, ModelConfig())
    with pytest.raises(ValueError, match="validation_site 'west'"):
        fit_and_validate(sc.cohort, sc.features, ModelConfig(split="site", validation_site="west"))
    with pytest.raises(ValueError, match="horizon_years"):
        ModelConfig(horizon_years=0)
    assert pa.types.is_timestamp(MODEL_REGISTRY.arrow_schema().field("trained_at").type)
