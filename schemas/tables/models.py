"""Outcome-model tables: every fitted model version, its validation metrics, and the production scores."""

from __future__ import annotations

import pyarrow as pa

from schemas.core import PHI, Column, Layer, Table

OUTCOMES = ("mof", "hip")
MODEL_KINDS = ("cox", "deep_cox", "logistic")
MODEL_STATUS = ("production", "candidate", "rejected")

MODEL_REGISTRY = Table(
    name="model_registry",
    layer=Layer.MARTS,
    grain="one row per model version (a model fitted for one outcome on one data snapshot)",
    description=(
        "Every fitted outcome-model version with its provenance (data snapshot, code version, cohort "
        "definition hash), its predictors and coefficients, and the gate decision. Exactly one version per "
        "outcome has status 'production' after a run."
    ),
    key=("model_version",),
    columns=(
        Column("model_version", pa.string(), "content hash of model, data and code (16 hex)", nullable=False),
        Column("model_name", pa.string(), "model family, e.g. conventional_bmd, opportunistic, deep", nullable=False),
        Column("outcome", pa.string(), "predicted outcome", nullable=False, allowed=OUTCOMES),
        Column("model_kind", pa.string(), "estimator", nullable=False, allowed=MODEL_KINDS),
        Column("horizon_years", pa.float64(), "prediction horizon", unit="years", nullable=False, min=0.1, max=30),
        Column("status", pa.string(), "gate decision", nullable=False, allowed=MODEL_STATUS),
        Column("gate_reason", pa.string(), "why the gate decided as it did", nullable=False),
        Column("trained_at", pa.timestamp("us", tz="UTC"), "when the model was fitted", nullable=False),
        Column("data_snapshot_id", pa.string(), "warehouse snapshot the cohort was read from"),
        Column("code_version", pa.string(), "package version and hash of the model code", nullable=False),
        Column("cohort_definition_hash", pa.string(), "hash of the cohort definition", nullable=False),
        Column("split", pa.string(), "validation design, e.g. 'temporal: index_date >= 2015-03-01'", nullable=False),
        Column("n_train", pa.int64(), "persons in the development set", nullable=False, min=0),
        Column("n_valid", pa.int64(), "persons in the validation set", nullable=False, min=0),
        Column("events_train", pa.int64(), "events within the horizon, development set", nullable=False, min=0),
        Column("events_valid", pa.int64(), "events within the horizon, validation set", nullable=False, min=0),
        Column("predictors_json", pa.string(), "JSON list of predictor names used by the model", nullable=False),
        Column("coefficients_json", pa.string(), "JSON list of {name, estimate, standard_error, scale}"),
        Column("baseline_risk", pa.float64(), "risk at the horizon for the mean predictor profile", min=0, max=1),
        Column("artifact_key", pa.string(), "key in ModelRun.artifacts of the stored weights (deep models)"),
        Column("model_card_key", pa.string(), "key in ModelRun.model_cards of the HTML model card", nullable=False),
    ),
)

MODEL_METRICS = Table(
    name="model_metrics",
    layer=Layer.MARTS,
    grain="one row per model version, metric, threshold and term",
    description=(
        "Validation metrics of each model version on the held-out set, with bootstrap percentile intervals: "
        "c_harrell, c_uno, auc_td, brier, calibration_slope, calibration_intercept, oe_ratio, "
        "nri_events, nri_nonevents (at 'threshold'), net_benefit and net_benefit_all (decision curve, per "
        "'threshold'), calibration_observed/calibration_predicted (per risk decile in 'term'), and "
        "hazard_ratio_per_sd (per predictor in 'term', with Wald intervals)."
    ),
    key=("model_version", "metric", "threshold", "term"),
    columns=(
        Column("model_version", pa.string(), "model_registry.model_version", nullable=False),
        Column("outcome", pa.string(), "predicted outcome", nullable=False, allowed=OUTCOMES),
        Column("metric", pa.string(), "metric name", nullable=False),
        Column("threshold", pa.float64(), "risk threshold the metric is computed at", min=0, max=1),
        Column("term", pa.string(), "predictor (hazard ratios), decile (calibration) or comparator (NRI)"),
        Column("estimate", pa.float64(), "point estimate on the validation set"),
        Column("ci_lower", pa.float64(), "lower 95% interval bound (bootstrap percentile or Wald)"),
        Column("ci_upper", pa.float64(), "upper 95% interval bound"),
        Column("n_bootstrap", pa.int64(), "bootstrap resamples behind the interval (0: Wald or none)", min=0),
    ),
)

PREDICTIONS = Table(
    name="predictions",
    layer=Layer.MARTS,
    grain="one row per cohort person and outcome (scored with that outcome's production model)",
    description="Risk at the horizon for every cohort member from the production model of each outcome.",
    key=("person_key", "outcome"),
    columns=(
        Column("person_key", pa.string(), "pseudonymous person key", nullable=False, phi=PHI.PSEUDONYMOUS),
        Column("outcome", pa.string(), "predicted outcome", nullable=False, allowed=OUTCOMES),
        Column("model_version", pa.string(), "model_registry.model_version", nullable=False),
        Column("horizon_years", pa.float64(), "prediction horizon", unit="years", nullable=False, min=0.1, max=30),
        Column("risk", pa.float64(), "predicted probability of the outcome by the horizon", nullable=False, min=0, max=1),
        Column("linear_predictor", pa.float64(), "model linear predictor (log relative hazard)"),
        Column("is_high_risk", pa.bool_(), "risk at or above the outcome's treatment threshold", nullable=False),
        Column("is_validation", pa.bool_(), "person was in the held-out validation set", nullable=False),
    ),
)

TABLES: list[Table] = [MODEL_REGISTRY, MODEL_METRICS, PREDICTIONS]
