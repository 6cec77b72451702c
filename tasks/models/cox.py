"""Cox proportional-hazards models (lifelines) and the risk predictions every model family shares."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter
from numpy.typing import NDArray

from tasks.models.metrics import SurvData

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Baseline:
    """Baseline cumulative hazard as a right-continuous step function (Breslow)."""

    times: Array
    cumhaz: Array

    def at(self, t: Array | float) -> Array:
        idx = np.searchsorted(self.times, np.asarray(t, dtype=float), side="right") - 1
        return np.where(idx >= 0, self.cumhaz[np.clip(idx, 0, None)], 0.0)


@dataclass(frozen=True)
class Coefficient:
    """One coefficient: log hazard ratio per unit of the (scaled) predictor, with its standard error."""

    name: str
    estimate: float
    standard_error: float
    scale: float  # development-set SD of the raw predictor (1 for 0/1 predictors)


@dataclass(frozen=True)
class CoxFit:
    """A fitted Cox model: coefficients on the preprocessed matrix and the Breslow baseline.

    ``lp`` is centred at the development mean profile, so ``1 - exp(-H0(h))`` is the risk at the
    horizon of that profile.
    """

    coefficients: tuple[Coefficient, ...]
    beta: Array
    center: Array
    baseline: Baseline

    def linear_predictor(self, x: Array) -> Array:
        return np.asarray((x - self.center) @ self.beta, dtype=float)

    def cumulative_hazard(self, lp: Array, t: Array | float) -> Array:
        return np.asarray(self.baseline.at(t) * np.exp(lp), dtype=float)

    def risk(self, lp: Array, horizon: float) -> Array:
        return np.asarray(1.0 - np.exp(-self.cumulative_hazard(lp, horizon)), dtype=float)


def fit_cox(
    x: Array, data: SurvData, names: list[str], scales: list[float] | None = None, penalizer: float = 0.0
) -> CoxFit:
    """Fit a Cox model with lifelines (Efron ties) on follow-up truncated at the horizon.

    Parameters
    ----------
    x
        Predictor matrix (persons x predictors), already imputed and scaled.
    data
        Development follow-up.
    names
        Column names of ``x``.
    scales
        SD of each raw predictor (reported with the coefficients); 1 when omitted.
    penalizer
        L2 penalty (lifelines ``penalizer``); a small value keeps sparse binary predictors finite.

    Raises
    ------
    ValueError
        When there are no events or lifelines does not converge.
    """
    n_events = int(data.event.sum())
    if n_events == 0:
        raise ValueError("no events in the development set; cannot fit a Cox model")
    if x.shape[1] == 0:
        raise ValueError("no predictors left to fit")
    frame = pd.DataFrame(x, columns=names)
    frame["__time"] = np.maximum(data.time, 1e-6)
    frame["__event"] = data.event.astype(int)
    cph = CoxPHFitter(penalizer=penalizer)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cph.fit(frame, duration_col="__time", event_col="__event")
    except Exception as e:  # lifelines raises ConvergenceError and numpy LinAlgError
        raise ValueError(f"Cox model did not converge ({len(names)} predictors, {n_events} events): {e}") from e
    beta = cph.params_.loc[names].to_numpy(dtype=float)
    se = cph.standard_errors_.loc[names].to_numpy(dtype=float)
    center = np.asarray(cph._norm_mean.loc[names].to_numpy(dtype=float))
    bch = cph.baseline_cumulative_hazard_
    base = Baseline(bch.index.to_numpy(dtype=float), bch.iloc[:, 0].to_numpy(dtype=float))
    sc = scales if scales is not None else [1.0] * len(names)
    coefs = tuple(
        Coefficient(n, float(b), float(s), float(k)) for n, b, s, k in zip(names, beta, se, sc, strict=True)
    )
    return CoxFit(coefficients=coefs, beta=beta, center=center, baseline=base)
