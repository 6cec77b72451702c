"""The volume builder's read path (arena, header prefix, integer clipping) against pydicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

from tasks.dicom.slice_reader import Arena, parse
from tasks.dicom.volume import load_best_ct_volume


def _reference(paths: list[Path]) -> np.ndarray:
    """HU as pydicom gives them (float32 rescale, clipped to -1024), ordered feet -> head."""
    ds = sorted((pydicom.dcmread(p) for p in paths), key=lambda d: float(d.ImagePositionPatient[2]))
    return np.stack([
        np.maximum(d.pixel_array.astype(np.float32) * np.float32(float(d.RescaleSlope))
                   + np.float32(float(d.RescaleIntercept)), np.float32(-1024.0))
        for d in ds
    ])


def _series(tmp_path: Path, intercept: str, big_private: bool) -> list[Path]:
    src = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    arr = src.pixel_array.astype(np.int16)
    arr[:4, :] = -3000  # padding far below air once rescaled
    arr[4:6, :] = np.arange(arr.shape[1], dtype=np.int16) - 60  # values around the clip point
    src.PixelData = arr.tobytes()
    src.PixelRepresentation = 1
    src.RescaleSlope = "1"
    src.RescaleIntercept = intercept
    if big_private:
        # A header longer than the 16 KiB prefix, holding the pixel data tag's bytes inside a value.
        src.add_new(0x00091010, "LO", "osteolake")
        src.add_new(0x00091011, "OB", (b"\xe0\x7f\x10\x00OW\x00\x00" * 10_000))
    paths = []
    for n, z in enumerate((5.0, 0.0, 2.5)):
        ds = src.copy()
        ds.ImagePositionPatient = [0.0, 0.0, z]
        ds.SOPInstanceUID = f"1.2.3.{n}"
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        p = tmp_path / f"s{n}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


@pytest.mark.parametrize(("intercept", "big_private"), [("-1024", False), ("-1000", True), ("0", False)])
def test_hu_identical_to_pydicom(tmp_path: Path, intercept: str, big_private: bool) -> None:
    paths = _series(tmp_path, intercept, big_private)
    vol, _ = load_best_ct_volume(tmp_path)
    ref = _reference(paths)
    assert vol.hu.dtype == np.float32
    assert np.array_equal(vol.hu, ref)  # bit for bit, not approximately
    assert vol.hu[:, :4].max() == -1024.0
    assert list(vol.slice_z_mm) == [0.0, 2.5, 5.0]


def test_arena_header_prefix_matches_whole_file(tmp_path: Path) -> None:
    """The header read from the prefix of an arena view equals the header read from the whole bytes."""
    (tmp_path / "big").mkdir()
    paths = _series(tmp_path, "-1024", False) + _series(tmp_path / "big", "-1024", True)
    arena = Arena(block=1024)  # smaller than a file: every file gets its own block
    for p in paths:
        v_view, pay_view = parse(str(p), arena.read(str(p)))
        v_bytes, pay_bytes = parse(str(p), p.read_bytes())
        assert pay_view.pixel_pos == pay_bytes.pixel_pos > 0
        for key in ("SeriesInstanceUID", "Rows", "ImagePositionPatient", "RescaleIntercept", "PixelSpacing"):
            assert v_view.text(key) == v_bytes.text(key)
        assert bytes(pay_view.buf) == pay_bytes.buf
