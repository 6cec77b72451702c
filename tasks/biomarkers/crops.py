"""Fixed-grid image inputs for the deep survival model, cut around L1 from a CT volume.

The crop is the mid-sagittal plane through the L1 body centre, ``size_mm`` square (T12 to L2 for an adult
spine), resampled to ``pixel_mm`` pixels with linear interpolation, in HU. It is stored as float16 bytes in
the ``image_crops`` table so the models stage never re-reads pixel data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from scipy import ndimage

from schemas import get_table
from tasks.biomarkers.spine import VertebraLabel
from tasks.dicom.volume import Volume

CROP_KIND = "l1_midsagittal"
CROP_VERSION = "crop-1.0"


def l1_sagittal_crop(
    volume: Volume, vertebrae: Sequence[VertebraLabel], size_mm: float = 96.0, pixel_mm: float = 2.0
) -> np.ndarray | None:
    """HU image (rows = z from head to feet, columns = y anterior to posterior) centred on L1.

    Returns ``None`` when L1 was not labelled.

    Notes
    -----
    Outside the volume the crop is filled with -1000 HU (air); a crop near the edge of coverage is still
    returned, so the deep model sees what the scan holds.
    """
    l1 = next((v for v in vertebrae if v.level == "L1"), None)
    if l1 is None:
        return None
    k0, i0, j0 = l1.centre_voxel
    n = int(round(size_mm / pixel_mm))
    dz, dy, _dx = volume.spacing_mm
    offsets = (np.arange(n) - (n - 1) / 2.0) * pixel_mm
    # Rows run head -> feet (z decreasing): slice index decreases as z decreases.
    ks = k0 - offsets / dz
    iis = i0 + offsets / dy
    kk, ii = np.meshgrid(ks, iis, indexing="ij")
    jj = np.full_like(kk, j0)
    out = ndimage.map_coordinates(volume.hu, [kk, ii, jj], order=1, mode="constant", cval=-1000.0)
    return out.astype(np.float32)


def crop_row(series_instance_uid: str, image: np.ndarray, pixel_mm: float = 2.0) -> dict[str, Any]:
    """One ``image_crops`` row for ``image``."""
    return {
        "series_instance_uid": series_instance_uid,
        "kind": CROP_KIND,
        "rows": int(image.shape[0]),
        "columns": int(image.shape[1]),
        "pixel_mm": float(pixel_mm),
        "pixels_f16": np.ascontiguousarray(image, dtype="<f2").tobytes(),
        "extractor_version": CROP_VERSION,
    }


def crops_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    table = get_table("image_crops")
    if not rows:
        return table.empty()
    return table.conform(pa.Table.from_pylist(list(rows)))


def decode_crop(row: Mapping[str, Any]) -> np.ndarray:
    """The HU image of an ``image_crops`` row (float32)."""
    data = row["pixels_f16"]
    shape = (int(row["rows"]), int(row["columns"]))
    arr = np.frombuffer(data, dtype="<f2")
    if arr.size != shape[0] * shape[1]:
        raise ValueError(f"image_crops row for {row.get('series_instance_uid')}: {arr.size} pixels, "
                         f"expected {shape[0]}x{shape[1]}")
    return arr.reshape(shape).astype(np.float32)
