"""The model suite: fit every model family per outcome, validate, gate, register and score the cohort."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from numpy.typing import NDArray

from schemas.tables.models import MODEL_METRICS, MODEL_REGISTRY, PREDICTIONS
from tasks.models.card import CardInputs, render_card
from tasks.models.config import ModelConfig, ModelName, Outcome
from tasks.models.cox import CoxFit, fit_cox
from tasks.models.deep import prepare_image, train_deep
from tasks.models.design import Preprocessor, join_cohort, outcome_columns, split_validation
from tasks.models.gate import gate
from tasks.models.metrics import SurvData, truncate
from tasks.models.validate import Predictions, Validation, validate


@dataclass
class ModelRun:
    """Result of :func:`fit_and_validate`.

    ``registry``, ``metrics`` and ``predictions`` conform to the ``model_registry``, ``model_metrics`` and
    ``predictions`` schemas; ``model_cards`` maps model_version to HTML; ``artifacts`` maps an artifact key
    (``models/<version>/deep.pt``) to bytes for the warehouse to store; ``notes`` lists models skipped or
    predictors dropped, with the reason.
    """

    registry: pa.Table
    metrics: pa.Table
    predictions: pa.Table
    model_cards: dict[str, str]
    artifacts: dict[str, bytes]
    notes: list[str] = field(default_factory=list)

    def c_index(self, outcome: str, model_name: str) -> float:
        """Validation Harrell's C of ``model_name`` for ``outcome`` (NaN when it was not fitted)."""
        reg = pl.from_arrow(self.registry)
        met = pl.from_arrow(self.metrics)
        assert isinstance(reg, pl.DataFrame) and isinstance(met, pl.DataFrame)
        ver = reg.filter((pl.col("outcome") == outcome) & (pl.col("model_name") == model_name))["model_version"]
        if ver.len() == 0:
            return float("nan")
        row = met.filter((pl.col("model_version") == ver[0]) & (pl.col("metric") == "c_harrell"))
        return float(row["estimate"][0])


@dataclass
class _Fitted:
    name: ModelName
    kind: str
    predictors: list[str]
    cox: CoxFit
    lp_all: NDArray[np.float64]
    preprocessor: Preprocessor | None = None
    artifact: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def code_version() -> str:
    """Package version plus a hash of this package's source files."""
    try:
        ver = metadata.version("osteolake")
    except metadata.PackageNotFoundError:
        ver = "0+unknown"
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")) + sorted(Path(__file__).parent.glob("*.j2")):
        h.update(path.read_bytes())
    return f"{ver}+{h.hexdigest()[:10]}"


def _data_hash(df: pl.DataFrame) -> str:
    return "data:" + hashlib.sha256(df.write_csv().encode()).hexdigest()[:16]


def fit_and_validate(
    cohort: pl.DataFrame,
    features: pl.DataFrame,
    config: ModelConfig,
    images: dict[str, np.ndarray] | None = None,
) -> ModelRun:
    """Fit, validate, gate and register every configured model for every configured outcome.

    Parameters
    ----------
    cohort, features
        The ``cohort`` and ``features`` tables (one row per person; columns in docs/interfaces.md).
    config
        Outcomes, horizon, split, bootstrap, thresholds, gate and deep-net settings.
    images
        ``person_key -> image`` (L1-centred crop in HU, 2-D, or a volume) for the deep model; without it
        the deep model is skipped.

    Returns
    -------
    ModelRun
        Registry rows for every version, metrics, predictions of each outcome's production model for every
        cohort person, HTML model cards and artifacts (deep-model weights).

    Notes
    -----
    Models are fitted on the development part of the split and validated on the held-out part; the
    production model scores everyone with the development fit (no refit on all data), so the predictions
    are exactly what was validated.
    """
    df = join_cohort(cohort, features)
    mask, split_desc = split_validation(df, config)
    dev_idx, val_idx = np.flatnonzero(~mask), np.flatnonzero(mask)
    dev_df = df[dev_idx]
    trained_at = datetime.now(UTC)
    code = code_version()
    cohort_hash = config.cohort_definition_hash or _data_hash(cohort)
    notes: list[str] = []
    reg_rows: list[dict[str, Any]] = []
    met_rows: list[dict[str, Any]] = []
    pred_tables: list[pa.Table] = []
    cards: dict[str, str] = {}
    artifacts: dict[str, bytes] = {}
    keys = df["person_key"].to_list()
    prepared = _prepare_images(keys, images, config) if images is not None else None

    for outcome in config.outcomes:
        tcol, ecol = outcome_columns(outcome)
        bad = df.filter(pl.col(tcol).is_null() | (pl.col(tcol) < 0)).height
        if bad:
            raise ValueError(f"cohort.{tcol}: {bad} persons have a missing or negative follow-up time")
        data = truncate(df[tcol].cast(pl.Float64).to_numpy(), df[ecol].fill_null(False).to_numpy(), config.horizon_years)
        dev, val = data.take(dev_idx), data.take(val_idx)
        threshold = config.thresholds[outcome]
        fitted: list[_Fitted] = []
        for name in config.models:
            try:
                if name is ModelName.DEEP:
                    if prepared is None:
                        notes.append(f"{outcome.value}/deep: skipped (no images given)")
                        continue
                    fitted.append(_fit_deep(prepared, dev_idx, dev, config))
                else:
                    fitted.append(_fit_tabular(name, df, dev_df, dev, config, notes, outcome))
            except ValueError as e:
                notes.append(f"{outcome.value}/{name.value}: not fitted ({e})")
        if not fitted:
            notes.append(f"{outcome.value}: no model could be fitted")
            continue
        preds = {
            f.name: Predictions(
                f.lp_all[val_idx], f.cox.risk(f.lp_all[val_idx], config.horizon_years),
                f.cox.cumulative_hazard(f.lp_all[val_idx], val.time),
            )
            for f in fitted
        }
        ref_name = config.gate.reference if config.gate.reference in preds else fitted[0].name
        vals: dict[ModelName, Validation] = {}
        for f in fitted:
            is_ref = f.name is ref_name
            vals[f.name] = validate(
                dev, val, preds[f.name], threshold=threshold, ref=None if is_ref else preds[ref_name],
                ref_name=None if is_ref else ref_name.value, n_bootstrap=config.n_bootstrap, seed=config.seed,
                decision_thresholds=config.decision_thresholds, coefficients=f.cox.coefficients if f.kind == "cox" else (),
            )
        decisions = gate({n: v.estimates for n, v in vals.items()}, ref_name, config.gate)
        for f in fitted:
            status, reason = decisions[f.name]
            version = _version(outcome, f, config, code, cohort_hash)
            art_key = None
            if f.artifact is not None:
                art_key = f"models/{version}/deep.pt"
                artifacts[art_key] = f.artifact
            coefs = [
                {"name": c.name, "estimate": c.estimate, "standard_error": c.standard_error, "scale": c.scale}
                for c in f.cox.coefficients
            ]
            reg_rows.append(
                {
                    "model_version": version, "model_name": f.name.value, "outcome": outcome.value,
                    "model_kind": f.kind, "horizon_years": config.horizon_years, "status": status,
                    "gate_reason": reason, "trained_at": trained_at, "data_snapshot_id": config.data_snapshot_id,
                    "code_version": code, "cohort_definition_hash": cohort_hash, "split": split_desc,
                    "n_train": dev.time.size, "n_valid": val.time.size, "events_train": int(dev.event.sum()),
                    "events_valid": int(val.event.sum()), "predictors_json": json.dumps(f.predictors),
                    "coefficients_json": json.dumps(coefs),
                    "baseline_risk": float(f.cox.risk(np.zeros(1), config.horizon_years)[0]),
                    "artifact_key": art_key, "model_card_key": version,
                }
            )
            for r in vals[f.name].rows:
                met_rows.append({"model_version": version, "outcome": outcome.value, **r})
            cards[version] = render_card(
                CardInputs(
                    model_name=f.name.value, model_version=version, outcome=outcome.value, status=status,
                    gate_reason=reason, config=config, split=split_desc, n_dev=dev.time.size,
                    n_val=val.time.size, events_dev=int(dev.event.sum()), events_val=int(val.event.sum()),
                    predictors=f.predictors, coefficients=f.cox.coefficients if f.kind == "cox" else (),
                    validation=vals[f.name], reference=ref_name.value, code_version=code,
                    cohort_hash=cohort_hash, attrition=_attrition(cohort, features, df, outcome),
                    notes=[n for n in notes if n.startswith(outcome.value)] + list(f.extra.get("notes", [])),
                    kind=f.kind,
                )
            )
            if status == "production":
                lp = f.lp_all
                risk = f.cox.risk(lp, config.horizon_years)
                pred_tables.append(
                    pa.table(
                        {
                            "person_key": keys, "outcome": [outcome.value] * len(keys),
                            "model_version": [version] * len(keys),
                            "horizon_years": np.full(len(keys), config.horizon_years), "risk": risk,
                            "linear_predictor": lp, "is_high_risk": risk >= threshold, "is_validation": mask,
                        }
                    )
                )
    registry = MODEL_REGISTRY.conform(pa.Table.from_pylist(reg_rows)) if reg_rows else MODEL_REGISTRY.empty()
    metrics = MODEL_METRICS.conform(pa.Table.from_pylist(met_rows)) if met_rows else MODEL_METRICS.empty()
    predictions = (
        PREDICTIONS.conform(pa.concat_tables([PREDICTIONS.conform(t) for t in pred_tables]))
        if pred_tables else PREDICTIONS.empty()
    )
    return ModelRun(registry, metrics, predictions, cards, artifacts, notes)


def _fit_tabular(
    name: ModelName, df: pl.DataFrame, dev_df: pl.DataFrame, dev: SurvData, config: ModelConfig,
    notes: list[str], outcome: Outcome,
) -> _Fitted:
    pp = Preprocessor.fit(dev_df, config.predictors(name), config.max_missing)
    for p, why in pp.dropped.items():
        notes.append(f"{outcome.value}/{name.value}: predictor {p!r} dropped ({why})")
    scales = [pp.scale[n] for n in pp.predictors] + [1.0] * len(pp.indicators)
    cox = fit_cox(pp.transform(dev_df), dev, pp.names, scales, penalizer=config.penalizer)
    return _Fitted(name, "cox", pp.names, cox, cox.linear_predictor(pp.transform(df)), preprocessor=pp)


def _prepare_images(
    keys: list[str], images: dict[str, np.ndarray], config: ModelConfig
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    g = config.deep.grid
    arr = np.zeros((len(keys), g, g), dtype=np.float32)
    has = np.zeros(len(keys), dtype=bool)
    for i, k in enumerate(keys):
        img = images.get(k)
        if img is None:
            continue
        try:
            arr[i] = prepare_image(img, config.deep)
            has[i] = True
        except ValueError:
            continue  # recorded below as a person without a usable image
    return arr, has


def _fit_deep(
    prepared: tuple[NDArray[np.float32], NDArray[np.bool_]], dev_idx: NDArray[np.int64], dev: SurvData,
    config: ModelConfig,
) -> _Fitted:
    arr, has = prepared
    use = has[dev_idx]
    if use.sum() < 20:
        raise ValueError(f"only {int(use.sum())} development persons have a usable image (need 20)")
    net = train_deep(arr[dev_idx][use], dev.take(np.flatnonzero(use)), config.deep, seed=config.seed)
    score = net.score(arr)
    fill = float(np.median(score[dev_idx][use]))
    score = np.where(has, score, fill)
    # Absolute risk: a one-covariate Cox model on the (development) score gives slope and Breslow baseline.
    mu, sd = float(score[dev_idx].mean()), float(score[dev_idx].std(ddof=1)) or 1.0
    z = (score - mu) / sd
    cox = fit_cox(z[dev_idx][:, None], dev, ["deep_risk_score"], [sd], penalizer=0.0)
    notes = [f"deep: {int((~has).sum())} persons without a usable image get the development median score"]
    notes.append(f"deep: best epoch {net.epochs_run} of {config.deep.epochs} on {net.device}")
    return _Fitted(
        ModelName.DEEP, "deep_cox", ["image"], cox, cox.linear_predictor(z[:, None]),
        artifact=net.to_bytes(), extra={"notes": notes, "score_center": mu, "score_scale": sd},
    )


def _version(outcome: Outcome, f: _Fitted, config: ModelConfig, code: str, cohort_hash: str) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([outcome.value, f.name.value, f.predictors, config.horizon_years, code, cohort_hash,
                         config.data_snapshot_id]).encode())
    h.update(np.ascontiguousarray(f.cox.beta).tobytes())
    if f.artifact is not None:
        h.update(f.artifact)
    return h.hexdigest()[:16]


def _attrition(cohort: pl.DataFrame, features: pl.DataFrame, df: pl.DataFrame, outcome: Outcome) -> list[tuple[str, int]]:
    tcol, ecol = outcome_columns(outcome)
    has_feat = df.filter(pl.col("person_key").is_in(features["person_key"].implode()))
    usable = df.filter(pl.col(tcol).is_not_null() & (pl.col(tcol) >= 0))
    return [
        ("persons in the cohort table", cohort.height),
        ("with a features row", has_feat.height),
        (f"with {outcome.value} follow-up", usable.height),
        (f"with a {outcome.value} event (any time)", int(usable[ecol].fill_null(False).sum())),
    ]
