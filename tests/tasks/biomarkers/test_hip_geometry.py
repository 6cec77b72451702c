"""Hip geometry on synthetic DXA hips (synthetic.femur truth, tolerance 3%) and on edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from synthetic.femur import femur_for, render_hip
from synthetic.population import make_population
from tasks.biomarkers.hip_geometry import measure_hip, side_from_header


@pytest.mark.parametrize("index", [0, 3, 7])
def test_geometry_within_three_percent(index: int) -> None:
    p = make_population(index + 1, 5)[index]
    f = femur_for(p)
    img, _ = render_hip(f, p, p.baseline, 0.5)
    img = img + np.random.default_rng(index).normal(0.0, 8.0, img.shape)
    h = measure_hip(img, 0.5)[0]
    t = f.truth()
    assert h.femoral_neck_width_mm == pytest.approx(t["femoral_neck_width_mm"], rel=0.03)
    assert h.hip_axis_length_mm == pytest.approx(t["hip_axis_length_mm"], rel=0.03)
    assert h.neck_shaft_angle_deg == pytest.approx(t["neck_shaft_angle_deg"], rel=0.03)
    assert h.femoral_head_diameter_mm == pytest.approx(2 * f.r_head, rel=0.05)
    # the shaft lies towards higher columns: an AP view of a left hip; no header -> assumed and flagged
    assert h.side == "left" and "side_assumed" in h.flags


def test_mirrored_image_is_a_right_hip() -> None:
    p = make_population(2, 5)[1]
    f = femur_for(p)
    img, _ = render_hip(f, p, p.baseline, 1.0)
    h = measure_hip(img[:, ::-1], 1.0)[0]
    assert h.side == "right"
    assert h.neck_shaft_angle_deg == pytest.approx(f.nsa_deg, rel=0.03)


def test_empty_and_bad_input() -> None:
    assert measure_hip(np.zeros((50, 50)), 0.5) == []
    small = np.zeros((60, 60))
    small[20:30, 20:30] = 500.0
    out = measure_hip(small, 0.5)
    assert out[0].femoral_neck_width_mm is None and out[0].flags == ["femur_not_found"]
    with pytest.raises(ValueError, match="pixel_mm"):
        measure_hip(np.zeros((5, 5)), 0.0)


def test_side_from_header() -> None:
    assert side_from_header({"ImageLaterality": "R"}) == "right"
    assert side_from_header({"SeriesDescription": "DXA LEFT HIP"}) == "left"
    assert side_from_header({}) is None
