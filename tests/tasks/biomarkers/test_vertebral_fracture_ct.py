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
    # Measured with the phantom's near-continuous slice profile (synthetic.ct.SUB_SLICE_MM = 0.25): 23
    # levels graded, 1 not, exact 1.0, sens 1.0 (3/3), spec 1.0, heights within 1.5 mm / 7% 0.986. Bench
    # (bench/fragility_accuracy.py --ct-only; the slice-profile fit from 2 mm with the cortex thickness
    # chosen per series, columns within 0.84 of the walls), exact / sens / spec / heights: seeds never
    # looked at, 173/179/181/191 x 10: 0.968, 0.949 (37/39), 0.993, 0.965 (with a fixed 1 mm cortex: 0.945,
    # 0.872, 0.985, 0.952); 193/197/199/211 x 10: 0.968, 1.0 (38/38), 0.986, 0.975 (0.946, 0.895, 0.989,
    # 0.968); seeds 53/59/61/67 x 10: 0.965, 1.0 (31/31), 0.986, 0.960; 101/103/107/109 x 10: 0.968, 0.972
    # (35/36), 0.986, 0.972; development seeds 11/23/31 x 8: 0.963, 1.0 (16/16), 0.994, 0.967. (With 1 mm
    # sub-planes, whose partial-volume steps hid where an endplate lay inside its slice, exact was 0.875.)
    sc = Score()
    for p in fractured[:3]:
        anat, vol, truth = render_spine_ct(p, 2.5, 0.78)
        got = {a.level: a for a in assess_ct(vol, labels_from_truth(anat, vol))}
        assert not any("thick_slices" in a.flags for a in got.values())
        for level, tr in truth.items():
            sc.add(got.get(level), tr)
    s = sc.summary()
    assert s["n"] >= 20 and s["missing"] <= 1
    assert s["exact"] >= 0.9
    assert s["sens"] >= 0.95 and s["spec"] >= 0.95 and s["n_pos"] >= 2
    assert s["heights"] >= 0.9  # heights within 1.5 mm or 7%


def test_thick_ct_phantoms_are_measured(fractured: list) -> None:
    # 5 mm slices, 1.5 mm pixels, the same four patients. Issue 5's CT targets are NOT met on thick slices,
    # and cannot be wholly: where bone is as dense as disc a slice places an endplate only to within 3.8 mm
    # (bench/fragility_accuracy.py's ct5_best_*, and the test below); this guards what the measurement does
    # reach, and that every level says it was measured on thick slices. The endplates are
    # placed inside their slices by the box slice-profile fit (slice_profile.slice_profile_fit).
    # Measured: 32 levels, 0 without a grade, exact 0.844, 3 of 4 grade >= 2 found, specificity 1.0,
    # heights within 1.5 mm / 7% 0.729 (with a fixed 1 mm cortex in the fit: 0.812, 2 of 4, 1.0, 0.708; the
    # edge search alone: exact 0.906, 4 of 4, 0.929, 0.656 on these four; on 24 tuning, 40 held-out and 40
    # fresh patients the fit was better: see the bench).
    sc = Score()
    for p in fractured:
        anat, vol, truth = render_spine_ct(p, 5.0, 1.5)
        got = {a.level: a for a in assess_ct(vol, labels_from_truth(anat, vol))}
        assert got and all("thick_slices" in a.flags for a in got.values())  # told apart downstream
        for level, tr in truth.items():
            sc.add(got.get(level), tr)
    s = sc.summary()
    assert s["n"] + s["missing"] >= 30 and s["missing"] <= 2
    assert s["exact"] >= 0.8 and s["spec"] >= 0.85
    assert s["n_pos"] >= 3 and s["tp"] >= 2
    assert s["heights"] >= 0.5


def test_thick_slices_show_an_endplate_only_to_within_its_slice_when_bone_is_as_dense_as_disc(fractured: list) -> None:
    # Why the 5 mm targets are out of reach: with bone as dense as disc a slice shows only which slice holds
    # an endplate's 1.2 mm cortex (unless it spans two), so an endplate can be anywhere in 3.8 mm.
    from bench.fragility_accuracy import _place, cortex_only_bound

    edges = np.arange(0.0, 30.0, 5.0)
    assert _place(edges, 7.0, -1.0, 1.2) == pytest.approx(7.5 + 0.6)  # top cortex 5.8-7.0: slice 5-10
    assert _place(edges, 5.5, -1.0, 1.2) == 5.5  # cortex 4.3-5.5 spans two slices: its masses place it
    assert _place(edges, 11.0, 1.0, 1.2) == pytest.approx(12.5 - 0.6)  # bottom cortex 11.0-12.2
    thin, thick = cortex_only_bound(fractured, 2.5, 1.5), cortex_only_bound(fractured, 5.0, 1.5)
    assert thin["bone_as_disc"] == thick["bone_as_disc"] > 0.1  # osteoporotic bodies in a fracture sample
    assert thin["heights"] > thick["heights"] and thin["heights"] >= 0.95
    assert thick["heights"] < 1.0


def _box_samples(e: np.ndarray, s: np.ndarray, width: float, b: float, c: float, d: float,
                 cortex: float) -> np.ndarray:
    """Exact box-profile samples at ``s`` (rows: columns) of bone b | cortex c | disc d with surface e."""
    lo, hi = s - width / 2, s + width / 2
    inner = np.clip(np.minimum(hi, (e - cortex)[:, None]) - lo, 0.0, width)
    below = np.clip(np.minimum(hi, e[:, None]) - lo, 0.0, width)
    return (b * inner + c * (below - inner) + d * (width - below)) / width


@pytest.mark.parametrize("bone_hu", [
    180.0,  # bone denser than the disc
    # Known limit: with bone as dense as the disc (osteoporotic), a cortex inside one slice leaves flat
    # directions in the squared residual, and the damped steps follow the noise along them: started at the
    # truth the fit drifts by ~0.65 mm on average (measured). Still, on the 5 mm phantoms it does better
    # than the edge search alone (bench/fragility_accuracy.py), which is why it is used there.
    pytest.param(85.0, marks=pytest.mark.xfail(strict=True, reason="flat residual with bone as dense as disc")),
])
def test_box_profile_fit_keeps_true_endplates_and_closes_in_from_slice_errors(bone_hu: float) -> None:
    from tasks.biomarkers.slice_profile import box_profile_endplates

    rng = np.random.default_rng(3)
    u = np.linspace(-0.88, 0.88, 21)
    width = 5.0
    # eight endplates (outward quadratics) at different places relative to the 5 mm slices
    true = np.array([[0.4 * (-1) ** k, 0.6 - 0.15 * k, 9.0 + 0.55 * k] for k in range(8)])
    rows_s, rows_v = [], []
    for q in true:
        e = np.polyval(q, u)
        s = np.tile(np.arange(-0.7, 25.0, width), (len(u), 1))
        v = _box_samples(e, s, width, bone_hu + rng.normal(0.0, 5.0, (len(u), 1)), 900.0, 85.0, 1.0)
        rows_s.append(np.where((s >= e[:, None] - width - 2.5) & (s <= e[:, None] + width), s, np.nan))
        rows_v.append(v + rng.normal(0.0, 3.0, v.shape))
    args = (np.concatenate(rows_s), np.concatenate(rows_v), np.tile(u, len(true)))
    groups, widths = np.repeat(np.arange(len(true)), len(u)), np.full(len(true) * len(u), width)
    at = np.array([-1.0, 0.0, 1.0])

    def err(coef: np.ndarray) -> float:
        return float(np.mean([np.abs(np.polyval(a, at) - np.polyval(b, at)) for a, b in zip(coef, true, strict=True)]))

    # the model is the image formation: started at the truth, the fit stays there
    assert err(box_profile_endplates(*args, true, groups, widths, cortex_mm=1.0)) < 0.1
    # started where an edge search inside a 5 mm slice leaves the endplates (0.28 mm off on average), it
    # closes in (measured 0.24 mm; it does not reach them: the squared residual has flat parts and local
    # minima)
    start = true + rng.choice([-1.0, 1.0], true.shape) * np.array([0.05, 0.1, 0.3])
    assert err(box_profile_endplates(*args, start, groups, widths, cortex_mm=1.0)) < 0.9 * err(start)


def test_the_cortex_thickness_is_chosen_by_the_residual_and_keeps_concave_endplates() -> None:
    # 2.5 mm slices, a 1.2 mm cortex, concave endplates (biconcave fractures: 1.5-3 mm deeper at the
    # centre than at the walls) at different places relative to the slices; bone denser than the disc
    from tasks.biomarkers.slice_profile import CORTEX_CANDIDATES_MM, box_profile_endplates

    rng = np.random.default_rng(11)
    u = np.linspace(-0.84, 0.84, 21)
    width, cortex = 2.5, 1.2
    true = np.array([[1.5 + 0.2 * k, 0.1 * (-1) ** k, 8.0 + 0.37 * k] for k in range(8)])
    rows_s, rows_v = [], []
    for q in true:
        e = np.polyval(q, u)
        s = np.tile(np.arange(-0.4, 20.0, width), (len(u), 1))
        v = _box_samples(e, s, width, 160.0 + rng.normal(0.0, 5.0, (len(u), 1)), 950.0, 85.0, cortex)
        rows_s.append(np.where((s >= e[:, None] - width - 2.5) & (s <= e[:, None] + width), s, np.nan))
        rows_v.append(v + rng.normal(0.0, 3.0, v.shape))
    args = (np.concatenate(rows_s), np.concatenate(rows_v), np.tile(u, len(true)))
    groups, widths = np.repeat(np.arange(len(true)), len(u)), np.full(len(true) * len(u), width)
    at = np.array([-1.0, 0.0, 1.0])

    def heights_err(coef: np.ndarray) -> float:  # wall height minus centre height, against the truth
        d = [np.polyval(a, at) - np.polyval(b, at) for a, b in zip(coef, true, strict=True)]
        return float(np.mean([x[0] + x[2] - 2 * x[1] for x in d]) / 2)

    fits = {c: box_profile_endplates(*args, true, groups, widths, cortex_mm=c, with_residual=True)
            for c in CORTEX_CANDIDATES_MM}
    assert min(fits, key=lambda c: fits[c][1]) == pytest.approx(cortex)
    # the 1 mm model bends the curves (deeper in the middle than at the walls, so Ha and Hp fall against
    # Hm); the thickness chosen by the residual keeps them
    assert heights_err(fits[1.0][0]) < -0.15
    assert abs(heights_err(fits[cortex][0])) < 0.5 * abs(heights_err(fits[1.0][0]))


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


def _sagittal_body(rows: int = 120, cols: int = 120, pix: float = 1.0) -> np.ndarray:
    """A sagittal image (1 mm pixels, soft tissue 40 HU) with one body: 26 mm high, 34 mm deep, a 1.5 mm
    cortex of 600 HU around 180 HU marrow, centred at (60, 60) mm."""
    img = np.full((rows, cols), 40.0)
    img[47:73, 43:77] = 600.0
    img[48:72, 45:75] = 180.0
    return img


def test_locate_body_ct_finds_the_body_and_refuses_what_is_not_one() -> None:
    from tasks.biomarkers.vertebral_fracture import locate_body_ct

    img = _sagittal_body()
    found = locate_body_ct(img, (1.0, 1.0), (62.0, 66.0))  # a labeller's start 2 mm up, 6 mm back
    assert found is not None
    (row, col), half_depth = found
    assert row == pytest.approx(59.5, abs=1.0) and col == pytest.approx(59.5, abs=1.0)
    assert half_depth == pytest.approx(17.0, abs=1.0)
    # an enhanced vessel (200 HU) against the anterior wall: one component 57 mm deep is no body
    vessel = img.copy()
    vessel[40:80, 15:43] = 200.0
    assert locate_body_ct(vessel, (1.0, 1.0), (62.0, 60.0)) is None
    # osteoporotic marrow below the bone threshold and walls lost to partial volume: only the endplates
    # remain, blurred over three 2.5 mm slices into 7 mm plates that are not the body (its centre lies
    # between them)
    plates = np.full_like(img, 40.0)
    plates[47:54, 43:77] = 400.0
    plates[66:73, 43:77] = 400.0
    assert locate_body_ct(plates, (1.0, 1.0), (62.0, 66.0)) is None


def test_locate_body_ct_refuses_two_bodies_joined_by_a_vessel() -> None:
    from tasks.biomarkers.vertebral_fracture import MAX_BODY_HEIGHT_MM, locate_body_ct

    # two bodies (centres 60 and 94 mm, an 8 mm disc between them) with an enhanced vessel (200 HU) lying
    # against both anterior walls: one component 41 mm deep (a plausible depth) and 70 mm tall, whose
    # centre is on neither body (hospital seed 107, patient 10: L3 and L4 graded 3 at half their height)
    img = _sagittal_body(160, 120)
    img[81:107, 43:77] = 600.0
    img[82:106, 45:75] = 180.0
    img[40:110, 36:43] = 200.0
    assert locate_body_ct(img, (1.0, 1.0), (62.0, 60.0)) is None
    # thick slices use only the depth position, where bodies merge across thin discs: kept there
    found = locate_body_ct(img, (1.0, 1.0), (62.0, 60.0), along_spine=False)
    assert found is not None and found[1] == pytest.approx(20.5, abs=1.0)
    # a window that cuts the joined component leaves a piece short enough to pass for a body: not taken
    assert 110 - 74 <= MAX_BODY_HEIGHT_MM
    assert locate_body_ct(img, (1.0, 1.0), (94.0, 60.0), reach_mm=20.0) is None


def test_a_start_off_the_column_is_moved_onto_it() -> None:
    from tasks.biomarkers.vertebral_fracture import OFF_COLUMN_MM, _off_column

    # (level, row mm along the spine, column mm in depth) of starts on a gently curving column
    column = [("T10", 280.0, 200.0), ("T11", 254.0, 201.0), ("T12", 226.0, 202.0), ("L1", 196.0, 203.0),
              ("L2", 164.0, 203.0), ("L3", 130.0, 202.0)]
    assert _off_column(column) == []
    # the labeller's top body started on a posterior element 38 mm behind the column (hospital seeds 83 and
    # 113: T10 fractures left ungraded, walls not found from there); it goes onto the line through T11, T12
    top = [("T10", 280.0, 238.0), *column[1:]]
    ((i, col),) = _off_column(top)
    assert i == 0 and col == pytest.approx(200.0, abs=0.5)
    # inside the column the line is interpolated and the tolerance is OFF_COLUMN_MM
    mid = [*column[:3], ("L1", 196.0, 203.0 - 1.5 * OFF_COLUMN_MM), *column[4:]]
    ((i, col),) = _off_column(mid)
    assert i == 3 and col == pytest.approx(202.5, abs=0.5)
    # at an end it is extrapolated, which doubles the error of the two bodies it comes from: 15 mm is kept
    assert _off_column([("T10", 280.0, 215.0), *column[1:]]) == []
    # a stray pair of neighbours is not a line to move a body onto (the next body disagrees with it): the
    # stray one is moved instead, and the end body stays
    bent = [*column[:4], ("L2", 164.0, 180.0), ("L3", 130.0, 202.0), ("L4", 96.0, 201.0)]
    assert [i for i, _ in _off_column(bent)] == [4]
    # two labels on one body (10 mm apart along the spine) are not a stray start
    assert _off_column([("T9", 286.0, 240.0), *column]) == []
