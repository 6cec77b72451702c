"""Genant grading, typing, ratios and SDI from exact heights."""

from __future__ import annotations

import pytest

from tasks.biomarkers.genant import (
    LEVELS,
    FractureType,
    NormalShape,
    VertebralHeights,
    genant_grade,
    grade_vertebrae,
    spinal_deformity_index,
)


@pytest.mark.parametrize(
    ("loss", "grade"),
    [(-0.1, 0), (0.0, 0), (0.199, 0), (0.20, 1), (0.249, 1), (0.25, 2), (0.399, 2), (0.40, 2), (0.401, 3), (0.9, 3)],
)
def test_grade_bounds(loss: float, grade: int) -> None:
    assert genant_grade(loss) == grade


def test_grade_rejects_nan() -> None:
    with pytest.raises(ValueError, match="height_loss"):
        genant_grade(float("nan"))


def _normal(level: str, h: float = 25.0) -> VertebralHeights:
    return VertebralHeights(level, h, h, h)


def _spine(**deformed: VertebralHeights) -> list[VertebralHeights]:
    return [deformed.get(lv, _normal(lv)) for lv in LEVELS]


def test_normal_spine_is_grade_zero() -> None:
    res = grade_vertebrae(_spine())
    assert [r.level for r in res] == list(LEVELS)
    assert all(r.genant_grade == 0 and r.deformity is FractureType.NONE for r in res)
    assert all(r.ratio_posterior_neighbours == pytest.approx(1.0) for r in res)
    assert spinal_deformity_index(res) == 0


@pytest.mark.parametrize(
    ("heights", "grade", "kind", "loss"),
    [
        ((25 * 0.78, 25 * 0.9, 25), 1, FractureType.WEDGE, 0.22),
        ((25 * 0.70, 25, 25), 2, FractureType.WEDGE, 0.30),
        ((25 * 0.5, 25 * 0.8, 25), 3, FractureType.WEDGE, 0.50),
        ((25, 25 * 0.66, 25), 2, FractureType.BICONCAVE, 0.34),
        ((25 * 0.55, 25 * 0.55, 25 * 0.55), 3, FractureType.CRUSH, 0.45),
        ((25 * 0.7, 25 * 0.7, 25 * 0.7), 2, FractureType.CRUSH, 0.30),
        ((25 * 0.85, 25 * 0.9, 25), 0, FractureType.NONE, 0.15),
    ],
)
def test_single_deformity(heights: tuple[float, float, float], grade: int, kind: FractureType, loss: float) -> None:
    res = {r.level: r for r in grade_vertebrae(_spine(L1=VertebralHeights("L1", *heights)))}
    r = res["L1"]
    assert r.genant_grade == grade
    assert r.deformity is kind
    assert r.height_loss == pytest.approx(loss, abs=1e-9)
    # the neighbours stay normal: a crushed L1 must not make T12 or L2 look deformed
    assert res["T12"].genant_grade == 0 and res["L2"].genant_grade == 0
    assert spinal_deformity_index(list(res.values())) == grade


def test_ratios_are_reported() -> None:
    r = grade_vertebrae([VertebralHeights("T12", 24, 22, 30), _normal("L1", 30)])[0]
    assert r.ratio_anterior_posterior == pytest.approx(0.8)
    assert r.ratio_middle_posterior == pytest.approx(22 / 30)
    assert r.ratio_posterior_neighbours == pytest.approx(1.0)
    assert r.reference_posterior_mm == pytest.approx(30.0)


def test_crush_at_end_of_range_uses_one_neighbour() -> None:
    res = grade_vertebrae([VertebralHeights("T10", 14, 14, 14), _normal("T11", 24), _normal("T12", 24)])
    assert res[0].genant_grade == 3 and res[0].deformity is FractureType.CRUSH
    assert [r.genant_grade for r in res[1:]] == [0, 0]


def test_two_separated_crushes_and_sdi() -> None:
    spine = _spine(
        T12=VertebralHeights("T12", 16, 16, 16), L2=VertebralHeights("L2", 14, 17, 25),
        L4=VertebralHeights("L4", 18, 18, 18),
    )
    res = {r.level: r for r in grade_vertebrae(spine)}
    assert res["T12"].genant_grade == 2 and res["T12"].deformity is FractureType.CRUSH
    assert res["L2"].genant_grade == 3 and res["L2"].deformity is FractureType.WEDGE
    assert res["L4"].genant_grade == 2 and res["L4"].deformity is FractureType.CRUSH
    # L3 sits between a wedge (normal Hp) and a crush: it stays normal
    assert res["L3"].genant_grade == 0
    assert spinal_deformity_index(list(res.values())) == 7


def test_normal_shape_profile_removes_level_trend() -> None:
    # heights that grow caudally by 4% per level look like crushes without the profile at the top
    heights = [_normal(lv, 20.0 * 1.04**i) for i, lv in enumerate(LEVELS)]
    profile = {lv: 1.04**i for i, lv in enumerate(LEVELS)}
    res = grade_vertebrae(heights, NormalShape(posterior_profile=profile))
    assert all(r.ratio_posterior_neighbours == pytest.approx(1.0) for r in res)
    wedge = NormalShape(anterior_ratio={"T12": 0.9})
    r = grade_vertebrae([VertebralHeights("T12", 18.0, 20.0, 20.0)], wedge)[0]
    assert r.height_loss == pytest.approx(0.0) and r.genant_grade == 0


def test_missing_heights_and_bad_levels() -> None:
    r = grade_vertebrae([VertebralHeights("L3", None, None, None)])[0]
    assert r.genant_grade is None and r.deformity is None
    assert spinal_deformity_index([r]) == 0
    with pytest.raises(ValueError, match="level 'S1'"):
        grade_vertebrae([VertebralHeights("S1", 1, 1, 1)])
    with pytest.raises(ValueError, match="given twice"):
        grade_vertebrae([_normal("L1"), _normal("L1")])


def test_fracture_type_accepts_string() -> None:
    assert FractureType("Wedge") is FractureType.WEDGE


def test_implausible_measurements_become_null_with_a_flag() -> None:
    from schemas.registry import get_table
    from tasks.biomarkers.genant import VertebralHeights, grade_vertebrae
    from tasks.biomarkers.vertebral_fracture import VertebraAssessment, fracture_table

    # the nightly-publish incident: Ha/Hp 3.1 and Hm/Hp 3.7 from a mis-measured posterior wall
    hs = [VertebralHeights("L1", 26.0, 25.0, 26.5), VertebralHeights("L2", 31.0, 37.0, 10.0),
          VertebralHeights("L3", 27.0, 26.0, 70.0), VertebralHeights("L4", 27.5, 26.5, 27.5)]
    res = {r.level: r for r in grade_vertebrae(hs)}
    assert res["L2"].ratio_anterior_posterior is None and res["L2"].genant_grade is None
    assert res["L2"].height_posterior_mm is None and "implausible_ratio" in res["L2"].flags
    assert res["L3"].height_posterior_mm is None and "implausible_height" in res["L3"].flags
    assert res["L1"].genant_grade == 0 and res["L4"].genant_grade == 0  # neighbours still graded
    rows = [VertebraAssessment.from_result(r, None, []) for r in res.values()]
    t = fracture_table("1.2.3", None, rows, "radiograph", "test")
    decl = get_table("vertebral_fractures")
    for col in decl.columns:
        if col.min is None and col.max is None:
            continue
        vals = [v for v in t.column(col.name).to_pylist() if v is not None]
        assert all((col.min is None or v >= col.min) and (col.max is None or v <= col.max) for v in vals), col.name
    assert "implausible_ratio" in t.column("qc_flags").to_pylist()[1]


def test_enforce_ranges_nulls_and_flags() -> None:
    from schemas.registry import get_table
    from tasks.biomarkers.ranges import enforce_ranges

    decl = get_table("hip_geometry")
    rows = enforce_ranges(decl, [{"femoral_neck_width_mm": 31.0, "hip_axis_length_mm": 260.0,
                                  "neck_shaft_angle_deg": float("nan"), "qc_flags": "side_assumed"}])
    assert rows[0]["femoral_neck_width_mm"] == 31.0 and rows[0]["hip_axis_length_mm"] is None
    assert rows[0]["neck_shaft_angle_deg"] is None
    assert rows[0]["qc_flags"] == "side_assumed,out_of_range_hip_axis_length_mm,not_finite_neck_shaft_angle_deg"
