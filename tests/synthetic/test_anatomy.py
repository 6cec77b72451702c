"""Anatomy of the synthetic patient and the CT values it renders, against the truth it reports."""

from __future__ import annotations

import numpy as np
import pytest

from synthetic import anatomy as A
from synthetic.anatomy import build_anatomy
from synthetic.ct import default_params, render_ct_series, trabecular_truth
from synthetic.population import LEVELS, make_population

POP = make_population(6, 1)  # seed 1: wedge, biconcave and crush fractures among 6 patients


def _patient(kind: str):
    for p in POP:
        for f in p.fractures:
            if f.kind == kind:
                return p, f
    raise AssertionError(f"no {kind} fracture in the test population")


def test_lumbar_sizes_and_discs_are_realistic() -> None:
    for p in POP:
        a = build_anatomy(p)
        for lo, up in zip(a.vertebrae[:-1], a.vertebrae[1:], strict=True):
            assert up.zc > lo.zc
            disc = (up.zc - up.h_post / 2) - (lo.zc + lo.h_post / 2)
            assert 5.0 <= disc <= 12.5, (p.index, lo.level, disc)
        for level in ("L1", "L2", "L3", "L4", "L5"):
            v = a.vertebra(level)
            if v.fracture != "none":
                continue
            assert 22.0 <= v.h_post <= 32.0
            assert 36.0 <= v.width <= 56.0
            assert 27.0 <= v.depth <= 38.0


@pytest.mark.parametrize("kind", ["wedge", "biconcave", "crush"])
def test_fracture_heights_follow_height_loss(kind: str) -> None:
    p, f = _patient(kind)
    a = build_anatomy(p)
    v = a.vertebra(f.level)
    ha, hm, hp = v.heights()
    above = a.vertebra(A.ALL_LEVELS[A.ALL_LEVELS.index(f.level) - 1])
    if kind == "wedge":
        assert ha / hp == pytest.approx(1 - f.height_loss, abs=1e-9)
    elif kind == "biconcave":
        assert hm / hp == pytest.approx(1 - f.height_loss, abs=1e-9)
        assert ha == pytest.approx(hp, rel=0.06)
    else:
        assert hp / above.heights()[2] < 0.85  # whole body lower than the neighbour
    assert v.grade == f.grade and v.fracture == kind


def _labels_at(a: A.Anatomy, z: float) -> np.ndarray:
    x = np.arange(-220.0, 220.0, 1.0)
    y = np.arange(-260.0, 200.0, 1.0)
    return a.paint(x, y, z)


def test_ribs_at_t10_t12_only_and_sacrum_below_l5() -> None:
    a = build_anatomy(POP[0])
    for level in ("T10", "T11", "T12"):
        assert (_labels_at(a, a.vertebra(level).zc) == A.RIB_MARROW).sum() > 20, level
    for level in ("L1", "L2", "L3", "L4", "L5"):
        assert (_labels_at(a, a.vertebra(level).zc) == A.RIB_MARROW).sum() == 0, level
    below = _labels_at(a, a.z_s1 - 20.0)
    assert (below == A.SACRUM_TRAB).sum() > 200
    l5 = a.vertebra("L5")
    assert a.z_s1 < l5.z_min
    # posterior elements and canal behind every body; a basivertebral vein at the mid-slice
    lab = _labels_at(a, a.vertebra("L3").zc)
    assert (lab == A.CSF).sum() > 100 and (lab == A.POST_BONE).sum() > 300 and (lab == A.BVV).sum() > 5


def test_body_composition_masks_are_plausible() -> None:
    from synthetic.ct import body_composition_truth

    for p in POP:
        a = build_anatomy(p)
        bc = body_composition_truth(p, a, default_params(a, fov_mm=500.0), "L3")
        assert 60.0 < bc["muscle_area_cm2"] < 260.0
        assert 10.0 < bc["vat_area_cm2"] < 400.0
        assert 20.0 < bc["sat_area_cm2"] < 600.0
        assert 0.0 < bc["imat_area_cm2"] < 0.15 * bc["muscle_area_cm2"]


def test_rendered_l1_trabecular_hu_matches_truth() -> None:
    p = POP[0]
    a = build_anatomy(p)
    l1 = a.vertebra("L1")
    date = p.studies[0].study_date
    params = default_params(a, kvp=80, contrast="portal_venous", trab_contrast_hu=18.0, pixel_mm=1.0,
                            fov_mm=420.0, z_start=round(l1.zc) - 5.0, z_end=round(l1.zc) + 5.0, noise_sd=20.0)
    dss, rows = render_ct_series(p, date, params, seed=3, anat=a)
    assert len(dss) == 5 and rows == []  # L1 only partly covered: no vertebra truth rows
    ds = dss[2]
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    x0, y0 = (float(v) for v in ds.ImagePositionPatient[:2])
    s = float(ds.PixelSpacing[0])
    xs = x0 + s * np.arange(hu.shape[1])
    ys = y0 + s * np.arange(hu.shape[0])
    roi = (xs[None, :] ** 2 / 12.0**2 + (ys[:, None] - (l1.yc - 4.0)) ** 2 / 8.0**2) <= 1.0
    truth = trabecular_truth(p, date, "L1", 80, 18.0)
    assert truth == pytest.approx(p.hu_level_120("L1", date) * 1.28 + 18.0 * 1.6)
    assert hu[roi].mean() == pytest.approx(truth, abs=3.0 * 20.0 / np.sqrt(roi.sum()) + 0.5)
    assert LEVELS[3] == "L1"
