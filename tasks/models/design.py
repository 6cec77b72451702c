"""From cohort + features to model inputs: outcome columns, validation split and predictor matrix."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl
from numpy.typing import NDArray

from tasks.models.config import ModelConfig, Outcome, SplitKind

COHORT_REQUIRED = ("person_key", "index_date", "site", "time_mof_years", "is_event_mof", "time_hip_years", "is_event_hip")


def outcome_columns(outcome: Outcome) -> tuple[str, str]:
    """(time column, event column) of ``outcome`` in the ``cohort`` table."""
    o = Outcome(outcome).value
    return f"time_{o}_years", f"is_event_{o}"


def join_cohort(cohort: pl.DataFrame, features: pl.DataFrame) -> pl.DataFrame:
    """One row per cohort person with its features (a person without features keeps nulls).

    Raises ``ValueError`` naming missing cohort columns or duplicated person keys.
    """
    missing = [c for c in COHORT_REQUIRED if c not in cohort.columns]
    if missing:
        raise ValueError(f"cohort table lacks columns {missing} (see docs/interfaces.md)")
    if "person_key" not in features.columns:
        raise ValueError("features table lacks column 'person_key'")
    for name, df in (("cohort", cohort), ("features", features)):
        if df["person_key"].is_duplicated().any():
            raise ValueError(f"{name} table has duplicated person_key values; expected one row per person")
    feats = features.drop([c for c in features.columns if c in cohort.columns and c != "person_key"])
    return cohort.join(feats, on="person_key", how="left").sort("person_key")


def split_validation(df: pl.DataFrame, config: ModelConfig) -> tuple[NDArray[np.bool_], str]:
    """Boolean validation mask and a one-line description of the split design."""
    n = df.height
    if config.split is SplitKind.TEMPORAL:
        dates = df["index_date"].cast(pl.Date)
        if dates.null_count():
            raise ValueError("cohort.index_date has nulls; a temporal split needs every index date")
        cut: date | None = config.split_date
        if cut is None:
            cut = dates.sort()[int(round((1 - config.valid_fraction) * (n - 1)))]
        mask = (dates >= cut).to_numpy()
        desc = f"temporal: index_date >= {cut.isoformat()}"
    elif config.split is SplitKind.SITE:
        sites = df["site"].cast(pl.Utf8).fill_null("unknown")
        site = config.validation_site
        if site is None:
            counts = sites.value_counts().sort(["count", "site"])
            site = str(counts["site"][0])
        if site not in set(sites.to_list()):
            raise ValueError(f"validation_site {site!r} is not a site of the cohort ({sorted(set(sites))})")
        mask = (sites == site).to_numpy()
        desc = f"site: validation site {site!r}"
    else:
        rng = np.random.default_rng(config.seed)
        mask = np.zeros(n, dtype=bool)
        mask[rng.choice(n, size=int(round(config.valid_fraction * n)), replace=False)] = True
        desc = f"random: {config.valid_fraction:.0%} held out (seed {config.seed})"
    mask = np.asarray(mask, dtype=bool)
    if mask.all() or not mask.any():
        raise ValueError(f"split {desc!r} leaves an empty development or validation set (n={n})")
    return mask, desc


@dataclass
class Preprocessor:
    """Predictor matrix from a frame: imputation, missing indicators and scaling learnt on development data.

    Continuous predictors are centred and scaled to one development-set SD (coefficients are then per SD);
    0/1 predictors are left as they are. Missing values get the development median and, when any value was
    missing in development, an ``<name>_missing`` indicator.
    """

    predictors: list[str]
    center: dict[str, float] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)
    median: dict[str, float] = field(default_factory=dict)
    indicators: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)

    @classmethod
    def fit(cls, df: pl.DataFrame, predictors: tuple[str, ...] | list[str], max_missing: float) -> Preprocessor:
        pp = cls(predictors=[])
        for name in predictors:
            if name not in df.columns:
                raise ValueError(f"predictor {name!r} is not a column of the features table")
            x = _numeric(df, name)
            miss = np.isnan(x)
            frac = float(miss.mean()) if x.size else 1.0
            if frac > max_missing:
                pp.dropped[name] = f"missing in {frac:.0%} of the development set"
                continue
            obs = x[~miss]
            if np.unique(obs).size < 2:
                pp.dropped[name] = "constant in the development set"
                continue
            pp.predictors.append(name)
            pp.median[name] = float(np.median(obs))
            binary = set(np.unique(obs).tolist()) <= {0.0, 1.0}
            pp.center[name] = 0.0 if binary else float(obs.mean())
            pp.scale[name] = 1.0 if binary else float(obs.std(ddof=1))
            if miss.any():
                pp.indicators.append(name)
        return pp

    @property
    def names(self) -> list[str]:
        return self.predictors + [f"{n}_missing" for n in self.indicators]

    def transform(self, df: pl.DataFrame) -> NDArray[np.float64]:
        cols = []
        for name in self.predictors:
            x = _numeric(df, name)
            miss = np.isnan(x)
            x = np.where(miss, self.median[name], x)
            cols.append((x - self.center[name]) / self.scale[name])
        for name in self.indicators:
            cols.append(np.isnan(_numeric(df, name)).astype(float))
        return np.column_stack(cols) if cols else np.zeros((df.height, 0))

    def to_json(self) -> str:
        return json.dumps(
            {"predictors": self.predictors, "center": self.center, "scale": self.scale, "median": self.median,
             "indicators": self.indicators, "dropped": self.dropped}
        )


def _numeric(df: pl.DataFrame, name: str) -> NDArray[np.float64]:
    s = df[name]
    if s.dtype == pl.Boolean:
        s = s.cast(pl.Float64)
    elif not s.dtype.is_numeric():
        raise ValueError(f"predictor {name!r} is not numeric (dtype {s.dtype}); pass it as categorical")
    return s.cast(pl.Float64).fill_nan(None).to_numpy().astype(float)
