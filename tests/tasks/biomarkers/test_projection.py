"""Projection images end to end: DICOM files of a lateral spine radiograph, a DXA hip and a DXA spine
(rendered from the synthetic anatomy) and a real DX thorax the project did not make."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from bench.fragility_accuracy import auc, render_dxa_spine, render_lateral
from schemas.registry import get_table
from synthetic.femur import femur_for, render_hip
from synthetic.population import make_population
from tasks.biomarkers.projection import classify, dxa_spine_tbs, extract_projection_series

REAL_DX = Path("/work/shared/real-dicom/highdicom-dx")


def write_image(path: Path, img: np.ndarray, *, modality: str, part: str, desc: str, pix: float,
                bits: int = 16, **extra: object) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.BodyPartExamined, ds.SeriesDescription = modality, part, desc
    for k, v in extra.items():
        setattr(ds, k, v)
    ds.PixelSpacing = [f"{pix:.4f}", f"{pix:.4f}"]
    ds.Rows, ds.Columns = img.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    ds.PixelData = np.clip(np.rint(img), 0, 2**bits - 1).astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dxa_hip_file(tmp_path: Path) -> None:
    p = make_population(3, 5)[2]
    f = femur_for(p)
    img, _ = render_hip(f, p, p.baseline, 0.5)
    write_image(tmp_path / "hip" / "a", img + 20.0, modality="BMD", part="HIP", desc="DXA LEFT HIP", pix=0.5)
    res = extract_projection_series(tmp_path / "hip")
    assert res.kind == "dxa_hip" and res.status == "ok"
    h = res.hips[0]
    assert h.side == "left" and "side_assumed" not in h.flags
    assert h.neck_shaft_angle_deg == pytest.approx(f.nsa_deg, rel=0.03)
    t = res.tables()
    assert t["hip_geometry"].num_rows == 1
    assert t["hip_geometry"].schema == get_table("hip_geometry").arrow_schema()
    assert json.loads(json.dumps(res.to_json()))["hip_geometry"][0]["side"] == "left"


def test_dxa_spine_files_rank_microarchitecture(tmp_path: Path) -> None:
    pats = make_population(20, 31)
    normal: list[float] = []
    degraded: list[float] = []
    for i, p in enumerate(pats):
        deg = i % 2 == 1
        folder = tmp_path / f"s{i}"
        write_image(folder / "x.dcm", render_dxa_spine(p, deg), modality="BMD", part="LSPINE",
                    desc="DXA AP SPINE L1-L4", pix=0.5)
        res = extract_projection_series(folder)
        assert res.kind == "dxa_spine" and res.tbs is not None
        (degraded if deg else normal).append(res.tbs)
    # target 0.9; measured 0.905 and 0.91 on 40 phantoms of fresh seeds 101 and 202 (bench), so this
    # 20-phantom sample is held to 0.8
    assert auc(normal, degraded) >= 0.8
    t = res.tables()["texture"]
    assert t.num_rows == 1 and t.column("region").to_pylist() == ["L1-L4"]


def test_dxa_spine_too_coarse() -> None:
    img = np.zeros((40, 40))
    assert dxa_spine_tbs(img, 1.0)[2] == ["no_bone_found"]


def test_lateral_spine_file_is_found_and_graded(tmp_path: Path) -> None:
    p = [q for q in make_population(40, 7) if q.fractures][0]
    anat, img, zs = render_lateral(p, 1.0)
    write_image(tmp_path / "dx" / "img", img, modality="DX", part="LSPINE", desc="L-SPINE LAT", pix=1.0,
                bits=12, ViewPosition="LL", PatientOrientation=["P", "F"])
    res = extract_projection_series(tmp_path / "dx")
    assert res.kind == "dx_lateral_spine" and res.status == "ok"
    assert "sacrum_not_found" not in res.flags and res.level_confidence is not None
    assert res.level_confidence >= 0.8
    # every level T10-L5 found at its true place (rows counted from the first image row)
    got = {v.level: v for v in res.vertebrae}
    assert sorted(got) == sorted(("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"))
    for level, v in got.items():
        assert v.body_center_mm == pytest.approx(zs[0] - anat.vertebra(level).zc, abs=3.0)
    js = res.to_json()
    for key in ("height_anterior_mm", "height_middle_mm", "height_posterior_mm", "genant_grade", "deformity"):
        assert key in js["vertebrae"][0]
    assert res.tables()["vertebral_fractures"].num_rows == len(res.vertebrae)


@pytest.fixture(scope="module")
def dx_score() -> dict[str, float]:
    from bench.fragility_accuracy import bench_dx

    # eight patients with prevalent fractures (64 levels, 4-5 of grade >= 2): a fracture-enriched sample
    return bench_dx([q for q in make_population(200, 7) if q.fractures][:8], 1.0)


def test_lateral_spine_accuracy_target(dx_score: dict[str, float]) -> None:
    # measured: n 64, missing 0, exact 0.984, spec 0.983 (57 of 58), heights 0.964, sens 1.0 (6 of 6)
    s = dx_score
    assert s["missing"] <= 2 and s["n"] >= 62
    assert s["exact"] >= 0.9 and s["heights"] >= 0.95 and s["spec"] >= 0.95


@pytest.fixture(scope="module")
def dx_enriched() -> dict[str, float]:
    from bench.fragility_accuracy import bench_dx, fracture_enriched

    # the first ten fractured patients of seeds 67 and 107 (160 levels, 12 of grade >= 2): they hold the
    # cases that were missed before (a wedge's endplate read against lung beyond the disc, an L5 wedge
    # whose tilted endplates hid it above the sacrum, a spurious body inferred beside adjacent T11/T12
    # fractures); these seeds were used while developing the fix
    return bench_dx(fracture_enriched((67, 107), 10), 1.0)


def test_lateral_spine_sensitivity_target(dx_enriched: dict[str, float]) -> None:
    # target: sensitivity and specificity for grade >= 2 >= 0.95 each, a missed level counting as a false
    # negative. Measured here: sens 1.0 (12 of 12), spec 0.993 (147 of 148), exact 0.975, heights 0.988,
    # about 12 s CPU. Bench (bench_dx, 10 fractured patients per seed, 1 mm): seeds 7/11/23/31/43 (tuning)
    # sens 1.0 (38 of 38), spec 0.994; seeds 59/67/71, 101-127 and 131-157 (looked at while developing)
    # 1.0 (21/21, 49/49, 53/53); seeds 163/167/173/179/181/191, never looked at before: sens 0.968 (61 of
    # 63), spec 0.983, exact 0.973, heights 0.978
    s = dx_enriched
    assert s["n_pos"] >= 10 and s["missing"] <= 2
    assert s["sens"] >= 0.95 and s["spec"] >= 0.95
    assert s["exact"] >= 0.9 and s["heights"] >= 0.95


@pytest.mark.parametrize(("seed", "index"), [(67, 14), (107, 10), (151, 3)])
def test_lateral_spine_levels_beside_fractures(seed: int, index: int) -> None:
    from tasks.biomarkers.lateral_spine import find_bodies_lateral

    # (67, 14): an L5 wedge (grade 3) whose tilted endplates give no peak above the sacrum; (107, 10):
    # adjacent T11 wedge and T12 biconcave fractures, whose rim and tilted endplate looked like an unseen
    # body in the gap; (151, 3): an L4 wedge (grade 3) whose gap must not be read as one body above L5's
    # lower endplate. Each level must be named at its true place.
    p = [q for q in make_population(400, seed) if q.index == index][0]
    anat, img, zs = render_lateral(p, 1.0)
    spine = find_bodies_lateral(img, 1.0)
    got = {lv: row for lv, row, _ in spine.centres}
    assert sorted(got) == sorted(("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"))
    assert "sacrum_not_found" not in spine.flags
    for level, row in got.items():
        assert row == pytest.approx(zs[0] - anat.vertebra(level).zc, abs=4.0), level


def test_endplate_edge_against_the_disc_not_the_lung() -> None:
    from tasks.biomarkers.lateral_heights import endplate_edge as _endplate_edge
    from tasks.biomarkers.vertebral_heights import CORTEX_HALF_MM, STEP_MM

    # a projected body (level 100) with its 1.2 mm endplate cortex (outer surface 8 mm from the centre)
    # and a 6 mm disc (level 90), then lung (60) or more disc (90) beyond, sampled at STEP_MM and blurred:
    # the surface must not depend on what lies beyond the disc (with the lung as the floor of the
    # cortex's centroid it moved 2.6 mm out into the disc: 10.6 mm instead of 7.9 mm)
    z = np.arange(0, 20, STEP_MM)
    edges = []
    for beyond in (60.0, 90.0):
        p = np.where(z < 6.8, 100.0, np.where(z < 8.0, 130.0, np.where(z < 14.0, 90.0, beyond)))
        p = np.convolve(np.pad(p, 2, mode="edge"), np.ones(5) / 5, mode="valid")
        edges.append(_endplate_edge(p, CORTEX_HALF_MM / STEP_MM, 1.0) * STEP_MM)
    assert edges[0] == pytest.approx(edges[1], abs=0.05)
    assert edges[0] == pytest.approx(8.0, abs=0.3)


def test_classify_headers() -> None:
    def ds(**kw: str) -> Dataset:
        d = Dataset()
        for k, v in kw.items():
            setattr(d, k, v)
        return d

    assert classify(ds(Modality="DX", BodyPartExamined="LSPINE", ViewPosition="LL")) == "dx_lateral_spine"
    assert classify(ds(Modality="CR", SeriesDescription="L-SPINE LAT")) == "dx_lateral_spine"
    assert classify(ds(Modality="DX", BodyPartExamined="LSPINE", ViewPosition="AP")) == "unsupported"
    assert classify(ds(Modality="BMD", BodyPartExamined="HIP")) == "dxa_hip"
    assert classify(ds(Modality="OT", SeriesDescription="DXA AP SPINE L1-L4")) == "dxa_spine"
    assert classify(ds(Modality="CT")) == "unsupported"


@pytest.mark.skipif(not REAL_DX.exists(), reason="shared real DICOM files not present")
def test_real_dx_thorax_is_skipped_with_a_flag() -> None:
    res = extract_projection_series(REAL_DX)
    assert res.kind == "unsupported" and res.status == "skipped"
    assert "not_a_lateral_spine_or_dxa_image" in res.flags
    assert res.pixel_mm == pytest.approx(1.2)
    assert res.vertebrae == [] and res.tables()["vertebral_fractures"].num_rows == 0
    json.dumps(res.to_json())
    # forced through the lateral-spine path anyway (a CANINE LATERAL THORAX): no crash, no invented levels
    from tasks.biomarkers.lateral_spine import assess_lateral_spine

    ds = pydicom.dcmread(next(REAL_DX.iterdir()))
    arr = ds.pixel_array.astype(float)
    arr = arr.max() - arr  # MONOCHROME1
    verts, flags, conf = assess_lateral_spine(arr, 1.2)
    assert 0.0 <= conf <= 1.0
    assert isinstance(flags, list)
    assert all(v.level in ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5") for v in verts)


def test_lateral_spine_endplate_in_first_row_and_narrow_disc() -> None:
    from tasks.biomarkers.lateral_spine import _one_missing, find_bodies_lateral

    # an endplate peak in the image's first rows has no outside: it once made every chain score NaN and
    # only one body was found; and a disc too narrow to hold a grade-3 body must not get a placeholder
    assert not _one_missing(11.0, 18.0) and _one_missing(30.0, 22.0)
    p = make_population(400, 11)[10]
    anat, img, zs = render_lateral(p, 1.0)
    spine = find_bodies_lateral(img, 1.0)
    got = {lv: row for lv, row, _ in spine.centres}
    assert sorted(got) == sorted(("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"))
    for level, row in got.items():
        assert row == pytest.approx(zs[0] - anat.vertebra(level).zc, abs=3.0)
