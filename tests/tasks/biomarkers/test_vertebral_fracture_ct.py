"""Vertebral fracture assessment on CT: partial-volume phantoms with known heights and grades, and real
CT series the project did not make."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.fragility_accuracy import Score, labels_from_truth, render_spine_ct
from synthetic.population import make_population
from tasks.biomarkers.vertebral_fracture import assess_ct, sagittal_reformat, sagittal_reformats
from tasks.dicom.volume import Volume

REAL = Path("/work/shared/real-dicom")


@pytest.fixture(scope="module")
def fractured() -> list:
    return [p for p in make_population(200, 5) if p.fractures][:4]


def test_ct_phantoms_thin_slices(fractured: list) -> None:
    # whole columns T10-S1 of patients with a prevalent fracture (a realistic mix: most levels normal).
    # Issue 5's exact-agreement target (0.9) is NOT guaranteed on 2.5 mm CT: an endplate inside one slice
    # is located only to within about +-0.6 mm, and a grade sits on its boundary by chance. Measured here:
    # 24 levels, exact 0.875 (a grade-2 biconcave L3 at 0.349 loss measured 0.400 -> 3; it was graded 2
    # before only because its Ha was 5 mm off), sens 1.0 (3/3), spec 0.95, heights 0.944. Bench
    # (bench/fragility_accuracy.py --ct-only): held-out seeds 53/59/61/67 x 10: exact 0.937, sens 1.0
    # (31/31), spec 0.972; development seeds 11/23/31 x 8: exact 0.911, sens 0.875 (14/16), spec 0.977.
    sc = Score()
    for p in fractured[:3]:
        anat, vol, truth = render_spine_ct(p, 2.5, 0.78)
        got = {a.level: a for a in assess_ct(vol, labels_from_truth(anat, vol))}
        for level, tr in truth.items():
            sc.add(got.get(level), tr)
    s = sc.summary()
    assert s["n"] >= 20 and s["missing"] <= 1
    assert s["exact"] >= 0.85
    assert s["sens"] >= 0.95 and s["spec"] >= 0.95 and s["n_pos"] >= 2
    assert s["heights"] >= 0.9  # heights within 1.5 mm or 7%


def test_thick_ct_phantoms_are_measured(fractured: list) -> None:
    # 5 mm slices, 1.5 mm pixels, the same four patients. Issue 5's CT targets are NOT met on thick slices
    # (a 1.2 mm endplate inside a 5 mm slice is located only to within the slice; see bench/fragility_accuracy.py
    # for the numbers); this guards what the measurement does reach. Measured: 32 levels, 0 without a
    # grade, exact 0.875, 3 of 4 grade >= 2 found, specificity 0.93, heights within 1.5 mm / 7% 0.625
    # (before the endplate searches reached half a slice further: 8 levels without a grade, 1 of 4 found).
    sc = Score()
    for p in fractured:
        anat, vol, truth = render_spine_ct(p, 5.0, 1.5)
        got = {a.level: a for a in assess_ct(vol, labels_from_truth(anat, vol))}
        for level, tr in truth.items():
            sc.add(got.get(level), tr)
    s = sc.summary()
    assert s["n"] + s["missing"] >= 30 and s["missing"] <= 2
    assert s["exact"] >= 0.8 and s["spec"] >= 0.85
    assert s["n_pos"] >= 3 and s["tp"] >= 2
    assert s["heights"] >= 0.5


def test_sagittal_reformats_share_slabs_and_resample_z() -> None:
    rng = np.random.default_rng(0)
    zs = np.array([0.0, 2.0, 4.0, 7.0, 9.0, 11.0])  # one gap: resampled onto the median spacing (2 mm)
    hu = rng.normal(0.0, 100.0, (len(zs), 8, 10)).astype(np.float32)
    vol = Volume(hu=hu, spacing_mm=(2.0, 1.0, 1.0), origin_mm=(0.0, 0.0, 0.0), slice_z_mm=zs,
                 series_instance_uid="t")
    out = sagittal_reformats(vol, [4.2, 3.8, 6.0])
    assert out[0][0] is out[1][0]  # the same slab (columns 3-5): one image
    img, spacing = out[2]
    assert spacing == (2.0, 1.0) and img.shape == (6, 8)  # z 0, 2, ..., 10
    slab = hu[:, :, 5:8].mean(axis=2, dtype=np.float64)
    for i in range(8):
        np.testing.assert_allclose(img[:, i], np.interp(np.arange(0.0, 11.0, 2.0), zs, slab[:, i]), atol=1e-9)
    np.testing.assert_array_equal(sagittal_reformat(vol, 6.0)[0], img)
    with pytest.raises(ValueError, match="column"):
        sagittal_reformats(vol, [40.0])


def test_assessment_json_fields(fractured: list) -> None:
    p = fractured[0]
    anat, vol, _ = render_spine_ct(p, 2.5, 1.5, levels=("L1", "L3"))
    res = assess_ct(vol, labels_from_truth(anat, vol))
    assert [a.level for a in res] == ["L1", "L2", "L3"]
    js = res[1].to_json()
    assert set(js) == {"height_anterior_mm", "height_middle_mm", "height_posterior_mm", "genant_grade", "deformity"}
    assert res[1].body_center_mm == pytest.approx(anat.vertebra("L2").zc, abs=3.0)
    assert assess_ct(vol, []) == []


@pytest.mark.skipif(not (REAL / "totalsegmentator-ct-t11-t12").exists(), reason="real DICOM not present")
def test_real_ct_partial_column_does_not_crash() -> None:
    from tasks.biomarkers.spine import find_vertebrae
    from tasks.dicom.volume import load_best_ct_volume

    for name in ("totalsegmentator-ct-t11-t12", "dcmqi-ct-3slice"):
        vol, _ = load_best_ct_volume(REAL / name)
        labels = find_vertebrae(vol)
        res = assess_ct(vol, labels)
        for a in res:
            # 20 slices of 2 mm cover at most one whole body: what is measured must be plausible, the rest
            # flagged rather than invented
            if a.genant_grade is None:
                assert a.flags
            else:
                assert 5.0 < (a.height_posterior_mm or 0) < 60.0
        img, spacing = sagittal_reformat(vol, vol.shape[2] / 2)
        assert img.shape[1] == vol.shape[1] and spacing[1] == pytest.approx(vol.spacing_mm[1])
