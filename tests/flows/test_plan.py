"""The extraction plan: eligible series, one CT series per study, nothing twice at the same version."""

from __future__ import annotations

import polars as pl

from flows.extract_biomarkers import Extractor, plan

CT = Extractor("ct_biomarkers", ("is_eligible_ct_spine",), "1.0", one_per_study=True)
DX = Extractor("projection", ("is_eligible_vertebral_fracture_dx", "is_eligible_dxa_hip"), "2.0")


def _series() -> pl.DataFrame:
    return pl.DataFrame({
        "series_instance_uid": ["thin", "thick", "loc", "dx", "hip", "other-study-ct"],
        "study_instance_uid": ["s1", "s1", "s1", "s2", "s3", "s4"],
        "is_eligible_ct_spine": [True, True, False, False, False, True],
        "is_eligible_vertebral_fracture_dx": [False, False, False, True, False, False],
        "is_eligible_dxa_hip": [False, False, False, False, True, False],
        "is_spacing_uniform": [True, True, None, None, None, True],
        "slice_thickness_mm": [1.25, 5.0, None, None, None, 3.0],
        "z_coverage_mm": [300.0, 300.0, 0.0, None, None, 280.0],
        "n_instances": [240, 60, 1, 1, 1, 94],
    })


def _instances() -> pl.DataFrame:
    rows = [(uid, i, f"/a/{uid}/{i}") for uid in ("thin", "thick", "loc", "dx", "hip", "other-study-ct")
            for i in range(2)]
    return pl.DataFrame(rows, schema=["series_instance_uid", "instance_number", "path"], orient="row")


def _runs(*done: tuple[str, str, str]) -> pl.DataFrame:
    return pl.DataFrame(list(done), schema=["series_instance_uid", "extractor", "extractor_version"], orient="row")


def test_one_ct_series_per_study_and_every_projection() -> None:
    jobs = plan(_series(), _instances(), _runs(), [CT, DX])
    got = sorted((j.extractor, j.series_instance_uid) for j in jobs)
    assert got == [("ct_biomarkers", "other-study-ct"), ("ct_biomarkers", "thin"),
                   ("projection", "dx"), ("projection", "hip")]
    thin = next(j for j in jobs if j.series_instance_uid == "thin")
    assert thin.paths == ("/a/thin/0", "/a/thin/1")


def test_done_at_this_version_is_not_planned_again_but_a_new_version_is() -> None:
    runs = _runs(("thin", "ct_biomarkers", "1.0"), ("dx", "projection", "1.0"))
    got = sorted(j.series_instance_uid for j in plan(_series(), _instances(), runs, [CT, DX]))
    assert got == ["dx", "hip", "other-study-ct"]
