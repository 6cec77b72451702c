"""Volume building against real DICOM files made by other projects."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from tasks.dicom.volume import VolumeFlag, build_volume, load_best_ct_volume, read_headers

REAL = Path(__file__).resolve().parents[3] / ".." / "shared" / "real-dicom"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real DICOM folder {REAL} is absent")


@needs_real
def test_jpeg2000_series_orders_and_rescales() -> None:
    vol, sel = load_best_ct_volume(REAL / "totalsegmentator-ct-t11-t12")
    assert vol.shape == (20, 512, 512)
    assert np.all(np.diff(vol.slice_z_mm) > 0)
    assert vol.spacing_mm[0] == pytest.approx(2.0)
    # air outside the body is about -1000 HU once rescaled (intercept -1024)
    assert np.median(vol.hu[:, :10, :10]) < -900
    # SliceThickness says 3 mm but the slices are 2 mm apart
    assert VolumeFlag.THICKNESS_SPACING_MISMATCH.value in vol.flags
    assert vol.contrast_agent == "APPLIED"
    assert sel["candidates"][0]["n_files"] == 20


@needs_real
def test_gantry_tilt_is_flagged_not_fatal() -> None:
    vol, _ = load_best_ct_volume(REAL / "ge-head-ct-gantry-tilt")
    assert VolumeFlag.GANTRY_TILT.value in vol.flags
    assert VolumeFlag.MIXED_SPACING.value in vol.flags  # 4 mm then 7 mm slices
    assert vol.shape[0] == 28


@needs_real
def test_implicit_vr_three_slices() -> None:
    vol, _ = load_best_ct_volume(REAL / "dcmqi-ct-3slice")
    assert vol.shape == (3, 512, 512)
    assert VolumeFlag.FEW_SLICES.value in vol.flags
    assert vol.voxel_to_patient(0, 0, 0)[2] == pytest.approx(vol.slice_z_mm[0])


@needs_real
def test_projection_only_folder_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no CT series"):
        load_best_ct_volume(REAL / "highdicom-dx")


def test_pydicom_ct_small_single_slice() -> None:
    path = get_testdata_file("CT_small.dcm")
    headers, bad = read_headers([str(path)])
    assert not bad
    vol = build_volume(headers)
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.allclose(vol.hu[0], np.maximum(expected, -1024))
    assert VolumeFlag.SINGLE_SLICE.value in vol.flags


def test_shuffled_slices_with_missing_one_and_localizer(tmp_path: Path) -> None:
    src = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    zs = [0.0, 2.5, 5.0, 10.0, 12.5]  # 7.5 is missing
    for n, z in enumerate(reversed(zs)):
        ds = src.copy()
        ds.ImagePositionPatient = [0.0, 0.0, z]
        ds.SOPInstanceUID = f"1.2.3.{n}"
        ds.save_as(tmp_path / f"s{n}", enforce_file_format=True)
    loc = src.copy()
    loc.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    loc.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    loc.SOPInstanceUID = "1.2.3.99"
    loc.save_as(tmp_path / "loc", enforce_file_format=True)
    (tmp_path / "junk.txt").write_text("not dicom")
    vol, sel = load_best_ct_volume(tmp_path)
    assert list(vol.slice_z_mm) == zs
    assert VolumeFlag.MISSING_SLICES.value in vol.flags
    assert VolumeFlag.LOCALIZER_EXCLUDED.value in vol.flags
    assert sel["skipped_files"] == 1


def test_fast_path_matches_pydicom_with_rescale_padding_and_opener(tmp_path: Path) -> None:
    """Pixels read straight from the file bytes equal pydicom's rescaled pixel_array (slope, intercept,
    padding clipped to -1024 HU), through a path and through an opener, explicit and implicit VR."""
    src = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    arr = src.pixel_array.copy()
    arr[:3, :] = arr.min()  # padding rows: -2000 HU after rescale below
    src.PixelData = arr.tobytes()
    src.RescaleSlope = "0.5"
    src.RescaleIntercept = str(-2000.0 - 0.5 * float(arr.min()))
    expected = []
    for n, (z, syntax) in enumerate([(0.0, "1.2.840.10008.1.2.1"), (2.5, "1.2.840.10008.1.2"), (5.0, "1.2.840.10008.1.2.1")]):
        ds = src.copy()
        ds.ImagePositionPatient = [0.0, 0.0, z]
        ds.SOPInstanceUID = f"1.2.3.{n}"
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(tmp_path / f"s{n}.dcm", implicit_vr=syntax.endswith(".2"), little_endian=True)
        ref = pydicom.dcmread(tmp_path / f"s{n}.dcm")
        expected.append(np.maximum(ref.pixel_array * float(ref.RescaleSlope) + float(ref.RescaleIntercept), -1024.0))
    vol, _ = load_best_ct_volume(tmp_path)
    assert np.allclose(vol.hu, np.stack(expected))
    assert vol.hu[:, :3].max() == -1024.0
    opened: list[str] = []

    def opener(path: str) -> io.BytesIO:
        opened.append(path)
        return io.BytesIO(Path(path).read_bytes())

    vol2, _ = load_best_ct_volume(sorted(str(p) for p in tmp_path.iterdir()), opener=opener)
    assert np.array_equal(vol.hu, vol2.hu)
    assert len(opened) == 3  # each file read once: header and pixels from the same bytes
