"""Model card per model version: HTML in TRIPOD+AI order with matplotlib plots embedded as base64 PNG."""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tasks.models.config import ModelConfig, Outcome  # noqa: E402
from tasks.models.cox import Coefficient  # noqa: E402
from tasks.models.validate import Validation  # noqa: E402

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True, undefined=jinja2.StrictUndefined
)
_LABELS = {
    "c_harrell": "Harrell's C", "c_uno": "Uno's C (to the horizon)", "auc_td": "Time-dependent AUC at the horizon",
    "brier": "Brier score at the horizon (IPCW)", "calibration_slope": "Calibration slope",
    "calibration_intercept": "Calibration intercept (log O/E, cumulative hazard)",
    "oe_ratio": "Observed / expected risk at the horizon", "nri_events": "NRI, events",
    "nri_nonevents": "NRI, non-events", "delta_c_harrell": "Harrell's C minus reference",
}
_FAMILIES = {
    "conventional": "FRAX-type clinical risk factors without BMD (not FRAX)",
    "conventional_bmd": "FRAX-type clinical risk factors with femoral-neck BMD T-score (not FRAX)",
    "opportunistic": "clinical risk factors and femoral-neck BMD plus opportunistic CT measures: L1 trabecular "
    "attenuation, prevalent vertebral fracture, L3 muscle attenuation",
    "deep": "end-to-end survival CNN on an L1-centred mid-sagittal image crop",
}


@dataclass
class CardInputs:
    """Everything a model card shows."""

    model_name: str
    model_version: str
    outcome: str
    status: str
    gate_reason: str
    config: ModelConfig
    split: str
    n_dev: int
    n_val: int
    events_dev: int
    events_val: int
    predictors: list[str]
    coefficients: tuple[Coefficient, ...]
    validation: Validation
    reference: str
    code_version: str
    cohort_hash: str
    attrition: list[tuple[str, int]]
    notes: list[str]
    kind: str


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def calibration_png(v: Validation, title: str) -> str:
    """Calibration plot (mean predicted vs Kaplan-Meier observed risk per group) as base64 PNG."""
    pred, obs = v.calibration_curve
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    top = max(float(max(pred.max(initial=0), obs.max(initial=0))) * 1.1, 0.05)
    ax.plot([0, top], [0, top], color="grey", lw=1, ls="--", label="ideal")
    ax.plot(pred, obs, "o-", color="C0", label="risk groups")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("predicted risk")
    ax.set_ylabel("observed risk (Kaplan-Meier)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _png(fig)


def decision_png(v: Validation, title: str) -> str:
    """Decision curve (net benefit of the model, treat all, treat none) as base64 PNG."""
    thr, nb, nb_all = v.decision_curve
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    ax.plot(thr, nb, "o-", label="model")
    ax.plot(thr, nb_all, color="grey", label="treat all")
    ax.axhline(0.0, color="black", lw=1, label="treat none")
    lo = min(0.0, float(nb.min(initial=0))) - 0.01
    ax.set_ylim(lo, max(float(nb.max(initial=0)), float(nb_all.max(initial=0)), 0.01) * 1.2)
    ax.set_xlabel("threshold risk")
    ax.set_ylabel("net benefit")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _png(fig)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3f}"


def render_card(c: CardInputs) -> str:
    """The HTML model card of one model version."""
    v = c.validation
    outcome_label = {"mof": "major osteoporotic fracture", "hip": "hip fracture"}[c.outcome]
    metric_rows = []
    for k, est in v.estimates.items():
        lo, hi = v.intervals.get(k, (math.nan, math.nan))
        ci = f"{_fmt(lo)} to {_fmt(hi)}" if math.isfinite(lo) else "n/a"
        metric_rows.append({"label": _LABELS.get(k, k), "est": _fmt(est), "ci": ci})
    coef_rows = [
        {
            "name": co.name, "hr": math.exp(co.estimate), "lo": math.exp(co.estimate - 1.96 * co.standard_error),
            "hi": math.exp(co.estimate + 1.96 * co.standard_error), "scale": f"{co.scale:.3g}",
        }
        for co in c.coefficients
    ]
    threshold = c.config.thresholds[Outcome(c.outcome)]
    estimator = {
        "cox": "Cox proportional hazards (lifelines, Efron ties, L2 penalty "
        f"{c.config.penalizer:g}); Breslow baseline hazard",
        "deep_cox": f"2-D CNN ({c.config.deep.grid}x{c.config.deep.grid} grid) trained with the Cox partial "
        "likelihood (torchsurv, Efron ties); score recalibrated by a one-covariate Cox model",
    }.get(c.kind, c.kind)
    title = f"{c.model_name}, {c.outcome}, {c.config.horizon_years:g} y"
    return _ENV.get_template("model_card.html.j2").render(
        c=c, outcome_label=outcome_label, horizon=f"{c.config.horizon_years:g}",
        family_text=_FAMILIES.get(c.model_name, c.model_name), estimator_text=estimator, coef_rows=coef_rows,
        metric_rows=metric_rows, threshold_pct=f"{threshold:.0%}", calibration_png=calibration_png(v, title),
        decision_png=decision_png(v, title),
    )
