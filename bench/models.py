"""Model-suite benchmark: planted-signal recovery and speed on the synthetic population.

Prints, on held-out data, Harrell's C of the conventional model with BMD (a), the opportunistic model (b)
and the deep image model (c), and the oracle C of the true linear predictor; then the wall time of the
whole suite on ~200 persons (1 torch thread) against a baseline measured in the same run (one lifelines
Cox fit of the opportunistic predictors on the same persons). Ends with one ``models:`` line.

Usage: ``.venv/bin/python bench/models.py [--n 3000] [--seed 21]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from lifelines.utils import concordance_index

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._cohort_from_population import build  # noqa: E402
from tasks.models.config import DeepConfig, ModelConfig, Outcome  # noqa: E402
from tasks.models.cox import fit_cox  # noqa: E402
from tasks.models.design import Preprocessor, join_cohort  # noqa: E402
from tasks.models.metrics import truncate  # noqa: E402
from tasks.models.suite import ModelRun, fit_and_validate  # noqa: E402


def _oracle(run: ModelRun, cohort: pl.DataFrame, lp: dict[str, float], horizon: float) -> float:
    pred = pl.from_arrow(run.predictions)
    assert isinstance(pred, pl.DataFrame)
    val = pred.filter((pl.col("outcome") == "mof") & pl.col("is_validation")).join(cohort, on="person_key")
    t = np.minimum(val["time_mof_years"].to_numpy(), horizon)
    e = (val["is_event_mof"] & (val["time_mof_years"] <= horizon)).to_numpy()
    return float(concordance_index(t, -np.array([lp[k] for k in val["person_key"]]), e))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=3000, help="persons for the recovery check")
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--small", type=int, default=200, help="persons for the timing run")
    args = ap.parse_args()
    torch.set_num_threads(1)

    sc = build(args.n, args.seed)
    cfg = ModelConfig(outcomes=(Outcome.MOF,), n_bootstrap=100, deep=DeepConfig(epochs=80))
    t0 = time.perf_counter()
    run = fit_and_validate(sc.cohort, sc.features, cfg, images=sc.images)
    t_big = time.perf_counter() - t0
    c_a = run.c_index("mof", "conventional_bmd")
    c_b = run.c_index("mof", "opportunistic")
    c_c = run.c_index("mof", "deep")
    oracle = _oracle(run, sc.cohort, sc.lp, cfg.horizon_years)
    best = max(c_a, c_b, c_c)
    reg = pl.from_arrow(run.registry)
    assert isinstance(reg, pl.DataFrame)
    print(f"n={args.n} seed={args.seed} split={reg['split'][0]} n_valid={reg['n_valid'][0]} "
          f"events_valid={reg['events_valid'][0]} ({t_big:.1f} s)")
    print(f"held-out Harrell's C: (a) conventional+BMD {c_a:.4f}  (b) opportunistic {c_b:.4f}  (c) deep {c_c:.4f}")
    print(f"oracle C (true lp) {oracle:.4f}; best - oracle = {best - oracle:+.4f}; (b) - (a) = {c_b - c_a:+.4f}")
    print("production:", reg.filter(pl.col("status") == "production")["model_name"].to_list())

    small = build(args.small, args.seed + 1)
    df = join_cohort(small.cohort, small.features)
    data = truncate(df["time_mof_years"].to_numpy(), df["is_event_mof"].to_numpy(), 10.0)
    t0 = time.perf_counter()
    pp = Preprocessor.fit(df, ModelConfig().predictors("opportunistic"), 0.8)
    fit_cox(pp.transform(df), data, pp.names, penalizer=0.01)
    t_base = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit_and_validate(small.cohort, small.features, ModelConfig(n_bootstrap=100), images=small.images)
    t_suite = time.perf_counter() - t0
    print(f"suite on {args.small} persons, 2 outcomes x 4 models, 100 bootstraps, 1 torch thread: {t_suite:.1f} s "
          f"({t_suite / t_base:.0f}x one Cox fit of {t_base * 1000:.0f} ms)")
    print(
        f"models: c_conventional={c_a:.4f} c_opportunistic={c_b:.4f} c_deep={c_c:.4f} c_oracle={oracle:.4f} "
        f"b_beats_a={c_b > c_a} best_within_0.03={abs(best - oracle) < 0.03} "
        f"suite_s={t_suite:.1f} ratio_to_cox_fit={t_suite / t_base:.0f}"
    )


if __name__ == "__main__":
    main()
