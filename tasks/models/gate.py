"""The production gate: which fitted model of an outcome may score the cohort."""

from __future__ import annotations

import math

from tasks.models.config import GateConfig, ModelName


def gate(
    estimates: dict[ModelName, dict[str, float]], reference: ModelName, config: GateConfig
) -> dict[ModelName, tuple[str, str]]:
    """Status (``production``/``candidate``/``rejected``) and reason for each model of one outcome.

    A non-reference model passes when its validation Harrell's C is at least the reference's minus
    ``config.max_c_drop`` and its calibration slope is inside ``config.slope_band``. The passing model with
    the highest C becomes production (the others that passed stay ``candidate``); if none passes, the
    reference is production. The reference itself is never rejected: it is the conventional baseline.

    Notes
    -----
    The gate compares point estimates on one validation set; it does not test whether a difference is
    larger than chance (the bootstrap interval of ``delta_c_harrell`` in ``model_metrics`` says that).
    """
    lo, hi = config.slope_band
    c_ref = estimates[reference]["c_harrell"]
    out: dict[ModelName, tuple[str, str]] = {}
    passing: list[tuple[float, ModelName]] = []
    for name, est in estimates.items():
        if name is reference:
            continue
        c, slope = est.get("c_harrell", math.nan), est.get("calibration_slope", math.nan)
        problems = []
        if not math.isfinite(c) or c < c_ref - config.max_c_drop:
            problems.append(f"C {c:.3f} below reference {reference.value} C {c_ref:.3f} - {config.max_c_drop:g}")
        if not (math.isfinite(slope) and lo <= slope <= hi):
            problems.append(f"calibration slope {slope:.2f} outside [{lo:g}, {hi:g}]")
        if problems:
            out[name] = ("rejected", "; ".join(problems))
        else:
            passing.append((c, name))
            out[name] = ("candidate", f"passed (C {c:.3f} vs {c_ref:.3f}, slope {slope:.2f}) but not the best")
    if passing:
        best_c, best = max(passing, key=lambda p: (p[0], p[1].value))
        slope = estimates[best]["calibration_slope"]
        out[best] = ("production", f"passed the gate with the highest C ({best_c:.3f} vs reference {c_ref:.3f}, slope {slope:.2f})")
        out[reference] = ("candidate", f"reference model; superseded by {best.value}")
    else:
        out[reference] = ("production", "reference model; no candidate passed the gate")
    return out
