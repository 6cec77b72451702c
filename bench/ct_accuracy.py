"""Accuracy of the CT biomarker extractor against synthetic ground truth over >= 50 CT series.

Series are drawn with the synthetic hospital's own scanner sampler (kVp 80-140, contrast phases, four
vendors' kernels, pixels 0.66-3 mm (the "clinical" mix: most series 512x512), slices 1-5 mm, partial coverage, chest and abdomen ranges) and
rendered with ``synthetic.ct`` (cached under ``.bench/ct_accuracy``); the volume is built in memory (the DICOM path is covered by tests and
``bench/ct_speed.py``).

Prints: level accuracy, L1 trabecular HU MAE, median and 95th percentile relative errors of the muscle,
VAT and SAT areas at L3 (and L1), and ends with one line ``ct_accuracy: key=value ...``.

Run: ``.venv/bin/python bench/ct_accuracy.py [--series 50] [--seed 11]``.
"""

from __future__ import annotations

import argparse
import pickle
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from synthetic import ct as C
from synthetic.anatomy import build_anatomy
from synthetic.hospital import sample_ct_study
from synthetic.population import Patient, Study, make_patient
from tasks.biomarkers.extract import CTResult, measure_volume
from tasks.dicom.volume import Volume

CACHE = Path(__file__).resolve().parents[1] / ".bench" / "ct_accuracy"
RENDER_VERSION = "r3"  # bump when synthetic.ct's image formation changes (invalidates the cache)


@dataclass
class Case:
    volume: Volume
    vertebrae: list[dict[str, Any]]
    body: list[dict[str, Any]]
    params: C.CTParams


def _render(p: Patient, study: Study, seed: int, thick: bool, mix: str,
            override: dict[str, Any] | None) -> Case:
    anat = build_anatomy(p)
    rng = np.random.default_rng([seed, p.index, study.index, 0xC1])
    thin_p, thick_p = sample_ct_study(rng, anat, study, small=False, mix=mix)
    params = thick_p if thick else thin_p
    if override:
        params = replace(params, **override)
    table = C.hu_table(p, study.study_date, params.kvp, params.contrast, params.trab_contrast_hu)
    zs = params.positions()
    clean = C.render_clean(anat, table, params, zs)
    img = C.blur_and_noise(clean, params, np.random.default_rng([seed, p.index, 0xC7]))
    del clean
    x, y = C.grid(params)
    order = np.argsort(zs)
    # Stored values are integers, as in DICOM: round and clip to air like the volume builder does.
    hu = np.maximum(np.rint(img[order]), -1024.0).astype(np.float32)
    vol = Volume(
        hu=np.ascontiguousarray(hu), spacing_mm=(params.slice_mm, params.spacing, params.spacing),
        origin_mm=(float(x[0]), float(y[0]), float(zs[order][0])), slice_z_mm=zs[order].astype(float),
        series_instance_uid=f"synthetic-{seed}-{p.index}-{study.index}-{int(thick)}", kvp=float(params.kvp),
        contrast_agent=None if params.contrast == "none" else "IODINE",
    )
    levels = C.covered_levels(anat, float(zs.min()), float(zs.max()))
    vt = C.vertebra_truth(p, anat, study.study_date, params, levels)
    bt = [C.body_composition_truth(p, anat, params, lv) for lv in ("L1", "L3") if lv in levels]
    return Case(vol, vt, bt, params)


def synthetic_case(p: Patient, study: Study, seed: int, *, thick: bool = False, mix: str = "clinical",
                   override: dict[str, Any] | None = None, cache: bool = True) -> Case:
    """Render one axial CT series of ``p`` in memory with its truth rows (cached under ``.bench/``)."""
    key = f"{RENDER_VERSION}-{mix}-{seed}-{p.index}-{study.index}-{int(thick)}"
    path = CACHE / f"{key}.pkl"
    if cache and not override and path.exists():
        with path.open("rb") as fh:
            d = pickle.load(fh)
        vol = d["volume"]
        vol.hu = d["hu"].astype(np.float32)
        return Case(vol, d["vertebrae"], d["body"], d["params"])
    case = _render(p, study, seed, thick, mix, override)
    if cache and not override:
        CACHE.mkdir(parents=True, exist_ok=True)
        hu = case.volume.hu
        case.volume.hu = np.zeros((0, 0, 0), dtype=np.float32)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            pickle.dump({"volume": case.volume, "hu": hu.astype(np.int16), "vertebrae": case.vertebrae,
                         "body": case.body, "params": case.params}, fh, protocol=5)
        tmp.replace(path)
        case.volume.hu = hu
    return case


def ct_cases(n: int, seed: int, *, override: dict[str, Any] | None = None) -> list[tuple[Patient, Study, bool]]:
    """The first ``n`` CT series (thin and thick reconstructions alternate) of the hospital ``seed``."""
    out: list[tuple[Patient, Study, bool]] = []
    i = 0
    while len(out) < n and i < 100 * n:
        p = make_patient(seed, i)
        for s in p.studies:
            if s.kind in ("ct_abdomen", "ct_chest") and len(out) < n:
                out.append((p, s, len(out) % 2 == 1))
        i += 1
    return out


def score(case: Case, res: CTResult) -> dict[str, Any]:
    """Per-series errors: level matches, L1 HU error, body-composition relative errors."""
    got = res.vertebrae
    n_ok = 0
    for row in case.vertebrae:
        near = min(got, key=lambda v: abs(v.z_mm - row["z_mm"])) if got else None
        if near is not None and abs(near.z_mm - row["z_mm"]) <= 10.0 and near.level == row["level"]:
            n_ok += 1
    out: dict[str, Any] = {"n_truth": len(case.vertebrae), "n_ok": n_ok, "l1_err": None}
    l1 = next((r for r in case.vertebrae if r["level"] == "L1"), None)
    if l1 is not None:
        m = res.trabecular.get("L1")
        out["l1_err"] = (m.hu_mean - l1["trabecular_hu"]) if m else float("nan")
    for b in case.body:
        mine = res.body.get(b["level"])
        for key in ("muscle_area_cm2", "vat_area_cm2", "sat_area_cm2"):
            val = getattr(mine, key) if mine else float("nan")
            out[f"{b['level']}_{key}"] = (val - b[key]) / b[key]
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, float]:
    n_truth = sum(r["n_truth"] for r in rows)
    s: dict[str, float] = {
        "series": float(len(rows)), "vertebrae": float(n_truth),
        "level_accuracy": sum(r["n_ok"] for r in rows) / max(n_truth, 1),
    }
    l1 = np.array([r["l1_err"] for r in rows if r["l1_err"] is not None], dtype=float)
    s["l1_n"] = float(len(l1))
    s["l1_mae_hu"] = float(np.nanmean(np.abs(l1))) if len(l1) else float("nan")
    s["l1_missing"] = float(np.isnan(l1).sum())
    for lv in ("L3", "L1"):
        for key in ("muscle_area_cm2", "vat_area_cm2", "sat_area_cm2"):
            e = np.abs(np.array([r[f"{lv}_{key}"] for r in rows if f"{lv}_{key}" in r], dtype=float))
            if len(e):
                short = key.split("_")[0]
                s[f"{lv}_{short}_median_rel_err"] = float(np.nanmedian(e))
                s[f"{lv}_{short}_within5pct"] = float(np.mean(e <= 0.05))
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=50)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--mix", default="clinical", choices=["clinical", "archive"])
    args = ap.parse_args()
    rows = []
    t_ext = 0.0
    for p, s, thick in ct_cases(args.series, args.seed):
        case = synthetic_case(p, s, args.seed, thick=thick, mix=args.mix)
        t0 = time.perf_counter()
        res = measure_volume(case.volume, with_qc=False, with_fracture=False)
        t_ext += time.perf_counter() - t0
        r = score(case, res)
        rows.append(r)
        bad = r["n_ok"] < r["n_truth"]
        print(f"{case.volume.series_instance_uid}: {case.params.slice_mm} mm x {case.params.spacing:.2f} mm "
              f"kvp {case.params.kvp} {case.params.contrast}: levels {r['n_ok']}/{r['n_truth']}"
              f"{' MISLABEL ' + ','.join(res.flags) if bad else ''} L1 err {r['l1_err']}")
    summary = summarise(rows)
    summary["extract_s_per_series"] = t_ext / max(len(rows), 1)
    for k, v in summary.items():
        print(f"  {k}: {v:.4f}")
    print("ct_accuracy: " + " ".join(f"{k}={v:.4g}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
