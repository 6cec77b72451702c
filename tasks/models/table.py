"""Bring your own table: fit and cross-validate a Cox or logistic model on any CSV or Parquet file.

Backs ``osteolake models fit``. Cox (lifelines) when a time column is given, logistic regression
(scikit-learn, unpenalised) for a binary outcome otherwise. Coefficients come from the fit on all complete
rows; metrics come from out-of-fold predictions of a stratified k-fold cross-validation.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from lifelines import CoxPHFitter
from numpy.typing import NDArray
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from tasks.models import metrics as m

Array = NDArray[np.float64]


def read_table(path: str | Path) -> pl.DataFrame:
    """Read a ``.csv`` or ``.parquet`` file; ``ValueError`` naming the file otherwise."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--table {p}: file not found")
    suffix = p.suffix.lower()
    try:
        if suffix == ".csv":
            return pl.read_csv(p, infer_schema_length=10000, null_values=["", "NA", "NaN", "nan", "null"])
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(p)
    except Exception as e:  # polars raises several error types for unreadable files
        raise ValueError(f"--table {p}: cannot read ({e})") from e
    raise ValueError(f"--table {p}: unsupported file type {suffix!r}; use .csv or .parquet")


def _binary(s: pl.Series, what: str) -> NDArray[np.bool_]:
    if s.dtype == pl.Boolean:
        return s.to_numpy().astype(bool)
    if s.dtype.is_numeric():
        vals = set(s.unique().to_list())
        if vals <= {0, 1}:
            return s.cast(pl.Int64).to_numpy().astype(bool)
    raise ValueError(f"{what} {s.name!r} must be 0/1 or boolean, found values {sorted(map(str, s.unique().to_list()))[:5]}")


def _design(df: pl.DataFrame, predictors: list[str], categorical: list[str]) -> tuple[Array, list[str]]:
    cols: list[Array] = []
    names: list[str] = []
    for p in predictors:
        s = df[p]
        if p in categorical:
            levels = sorted(s.cast(pl.Utf8).unique().to_list())
            if len(levels) < 2:
                raise ValueError(f"categorical predictor {p!r} has a single level {levels}; it cannot be fitted")
            for lev in levels[1:]:  # first level is the reference
                cols.append((s.cast(pl.Utf8) == lev).cast(pl.Float64).to_numpy())
                names.append(f"{p}={lev}")
        elif s.dtype == pl.Boolean or s.dtype.is_numeric():
            cols.append(s.cast(pl.Float64).to_numpy())
            names.append(p)
        else:
            raise ValueError(f"predictor {p!r} is not numeric (dtype {s.dtype}); pass it with --categorical {p}")
    x = np.column_stack(cols)
    for j, n in enumerate(names):
        if np.ptp(x[:, j]) == 0:
            raise ValueError(f"predictor {n!r} is constant; it cannot be fitted")
    return x, names


def fit_table(
    table: str | Path | pl.DataFrame,
    outcome: str,
    predictors: list[str],
    *,
    time: str | None = None,
    categorical: list[str] | None = None,
    horizon: float | None = None,
    folds: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit and cross-validate a Cox (``time`` given) or logistic model on a table.

    Parameters
    ----------
    table
        A CSV/Parquet path or a Polars frame.
    outcome
        Event indicator (Cox) or binary outcome (logistic): 0/1 or boolean.
    predictors
        Predictor columns; numeric or boolean unless listed in ``categorical`` (dummy-coded, first level
        in sort order is the reference).
    time
        Follow-up time column (> 0); selects the Cox model.
    horizon
        Time at which Cox risk, Brier score and calibration are evaluated (default: median follow-up).
    folds, seed
        Stratified k-fold cross-validation for the metrics.

    Returns
    -------
    dict
        ``model``, ``n``, ``n_excluded_missing``, ``events``, ``coefficients`` (list of ``name``,
        ``estimate``, ``standard_error``, ``ci_lower``, ``ci_upper``, ``p_value``) and ``metrics``
        (``c_index`` for Cox or ``auc`` for logistic, ``brier``, ``calibration_slope``,
        ``calibration_intercept``). These key names are a contract of ``osteolake models fit --json``.

    Raises
    ------
    ValueError
        For a missing column, a non-numeric predictor, a non-binary outcome, no events (or only events),
        non-positive times, or too few rows.
    """
    source = "table" if isinstance(table, pl.DataFrame) else str(table)
    df = table if isinstance(table, pl.DataFrame) else read_table(table)
    categorical = list(categorical or [])
    if not predictors:
        raise ValueError("--predictors is empty; name at least one column")
    wanted = [outcome] + ([time] if time else []) + predictors
    missing = [c for c in dict.fromkeys(wanted + categorical) if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: no column(s) {missing}; columns are {df.columns}")
    stray = [c for c in categorical if c not in predictors]
    if stray:
        raise ValueError(f"--categorical {stray} are not among --predictors")
    n_all = df.height
    df = df.select(list(dict.fromkeys(wanted))).drop_nulls()
    float_cols = [c for c in df.columns if df[c].dtype in (pl.Float32, pl.Float64)]
    if float_cols:
        df = df.filter(pl.all_horizontal([pl.col(c).is_finite() for c in float_cols]))
    y = _binary(df[outcome], "outcome")
    x, names = _design(df, predictors, categorical)
    n_events = int(y.sum())
    if n_events == 0:
        raise ValueError(f"outcome {outcome!r} has no events among {df.height} complete rows")
    if time is None and n_events == df.height:
        raise ValueError(f"outcome {outcome!r} is 1 in every complete row; nothing to discriminate")
    k = min(folds, n_events, df.height - n_events if time is None else n_events)
    if k < 2 or df.height < 2 * (len(names) + 1):
        raise ValueError(f"too few rows/events to fit and validate ({df.height} rows, {n_events} events, {len(names)} terms)")
    out: dict[str, Any] = {
        "model": "cox" if time else "logistic", "table": source, "outcome": outcome, "time": time,
        "n": df.height, "n_excluded_missing": n_all - df.height, "events": n_events,
        "validation": f"{k}-fold stratified cross-validation (out-of-fold predictions)",
    }
    if time is not None:
        t = df[time]
        if not t.dtype.is_numeric():
            raise ValueError(f"time column {time!r} is not numeric (dtype {t.dtype})")
        tt = t.cast(pl.Float64).to_numpy()
        if (tt <= 0).any():
            raise ValueError(f"time column {time!r} has {int((tt <= 0).sum())} values <= 0; times must be positive")
        h = float(np.median(tt)) if horizon is None else float(horizon)
        out.update(_cox(x, names, tt, y, h, k, seed))
    else:
        out.update(_logistic(x, names, y, k, seed))
    return out


def _coef_rows(names: list[str], est: Array, se: Array, ratio: str) -> list[dict[str, Any]]:
    rows = []
    for n, b, s in zip(names, est, se, strict=True):
        z = b / s if s > 0 else math.nan
        rows.append(
            {"name": n, "estimate": float(b), "standard_error": float(s), ratio: float(math.exp(b)),
             "ci_lower": float(b - 1.96 * s), "ci_upper": float(b + 1.96 * s),
             "p_value": float(2 * stats.norm.sf(abs(z))) if math.isfinite(z) else None}
        )
    return rows


def _cox_fit(x: Array, names: list[str], t: Array, e: NDArray[np.bool_]) -> CoxPHFitter:
    frame = pd.DataFrame(x, columns=names).assign(__t=t, __e=e.astype(int))
    cph = CoxPHFitter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cph.fit(frame, duration_col="__t", event_col="__e")
    except Exception as ex:  # lifelines ConvergenceError, numpy LinAlgError
        raise ValueError(f"Cox model did not converge (collinear or separating predictors?): {ex}") from ex
    return cph


def _cox(x: Array, names: list[str], t: Array, e: NDArray[np.bool_], h: float, k: int, seed: int) -> dict[str, Any]:
    cph = _cox_fit(x, names, t, e)
    coefs = _coef_rows(names, cph.params_.to_numpy(), cph.standard_errors_.to_numpy(), "hazard_ratio")
    risk = np.zeros(t.size)
    cumhaz = np.zeros(t.size)
    data = m.truncate(t, e, h)
    for fit_i, test_i in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, e):
        f = _cox_fit(x[fit_i], names, t[fit_i], e[fit_i])
        ph = f.predict_partial_hazard(pd.DataFrame(x[test_i], columns=names)).to_numpy()
        bch = f.baseline_cumulative_hazard_
        times, h0 = bch.index.to_numpy(dtype=float), bch.iloc[:, 0].to_numpy(dtype=float)

        def base(tq: Array | float, times: Array = times, h0: Array = h0) -> Array:
            i = np.searchsorted(times, tq, side="right") - 1
            return np.where(i >= 0, h0[np.clip(i, 0, None)], 0.0)

        cumhaz[test_i] = base(data.time[test_i]) * ph
        risk[test_i] = 1 - np.exp(-base(h) * ph)
    cal = m.calibration(data, risk, cumhaz)
    metrics = {
        "c_index": m.harrell_c(m.SurvData(t, e, math.inf), risk),
        "brier": m.brier(data, data, risk),
        "calibration_slope": cal.slope,
        "calibration_intercept": cal.intercept,
        "oe_ratio": cal.oe_ratio,
        "horizon": h,
    }
    return {"coefficients": coefs, "metrics": _clean(metrics)}


def _logit_fit(x: Array, y: NDArray[np.bool_]) -> LogisticRegression:
    lr = LogisticRegression(C=np.inf, max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        lr.fit(x, y)
    return lr


def _logistic(x: Array, names: list[str], y: NDArray[np.bool_], k: int, seed: int) -> dict[str, Any]:
    lr = _logit_fit(x, y)
    beta = np.concatenate([lr.intercept_, lr.coef_.ravel()])
    xd = np.column_stack([np.ones(len(y)), x])
    p = 1 / (1 + np.exp(-(xd @ beta)))
    info = xd.T @ (xd * (p * (1 - p))[:, None])
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError as e:
        raise ValueError("logistic model information matrix is singular (collinear predictors or separation)") from e
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    coefs = _coef_rows(["intercept"] + names, beta, se, "odds_ratio")
    oof = np.zeros(len(y))
    for fit_i, test_i in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y):
        oof[test_i] = _logit_fit(x[fit_i], y[fit_i]).predict_proba(x[test_i])[:, 1]
    oof = np.clip(oof, 1e-8, 1 - 1e-8)
    lp = np.log(oof / (1 - oof))
    slope = float(_logit_fit(lp[:, None], y).coef_.ravel()[0])
    metrics = {
        "auc": float(roc_auc_score(y, oof)),
        "brier": float(brier_score_loss(y, oof)),
        "calibration_slope": slope,
        "calibration_intercept": _offset_intercept(y, lp),
    }
    return {"coefficients": coefs, "metrics": _clean(metrics)}


def _offset_intercept(y: NDArray[np.bool_], offset: Array) -> float:
    """Calibration-in-the-large: intercept of logit P(y) = a + offset, by Newton-Raphson.

    One parameter with an offset is not offered by scikit-learn, so it is solved here.
    """
    a = 0.0
    for _ in range(100):
        p = 1 / (1 + np.exp(-(a + offset)))
        step = float(np.sum(y - p) / max(np.sum(p * (1 - p)), 1e-12))
        a += step
        if abs(step) < 1e-10:
            break
    return a


def _clean(d: dict[str, float]) -> dict[str, float | None]:
    return {k: (float(v) if v is not None and math.isfinite(v) else None) for k, v in d.items()}
