"""The segmentation step as an interface: the classical backend (default, runs everywhere) and an
optional TotalSegmentator backend used when the package and its weights are installed.

A backend turns a :class:`~tasks.dicom.volume.Volume` into labelled vertebrae
(:class:`~tasks.biomarkers.spine.VertebraLabel`); density and body composition are measured the same way
whichever backend found the vertebrae.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy import ndimage as ndi

from schemas.enums import StrValueEnum
from tasks.biomarkers.spine import LEVELS, SpineResult, VertebraLabel, analyse_spine
from tasks.dicom.volume import Volume


class Backend(StrValueEnum):
    """Segmentation backends; accepts the member or its string value."""

    CLASSICAL = "classical"
    TOTALSEGMENTATOR = "totalsegmentator"



class SpineSegmenter(Protocol):
    def __call__(self, volume: Volume) -> SpineResult: ...


def classical(volume: Volume) -> SpineResult:
    """The classical spine finder of :mod:`tasks.biomarkers.spine`."""
    return analyse_spine(volume)


def _weights_dir() -> Path:
    return Path(os.environ.get("TOTALSEG_HOME_DIR", Path.home() / ".totalsegmentator")) / "nnunet" / "results"


def totalsegmentator_available() -> tuple[bool, str]:
    """Whether the TotalSegmentator backend can run here, and why not."""
    if importlib.util.find_spec("totalsegmentator") is None:
        return False, "the 'totalsegmentator' package is not installed (pip install TotalSegmentator)"
    if importlib.util.find_spec("nibabel") is None:
        return False, "the 'nibabel' package is not installed"
    if not _weights_dir().is_dir() or not any(_weights_dir().iterdir()):
        return False, f"TotalSegmentator weights not found under {_weights_dir()} (run totalseg_download_weights)"
    return True, ""


def totalsegmentator(volume: Volume) -> SpineResult:  # pragma: no cover - needs the package and weights
    """Vertebrae from TotalSegmentator's ``vertebrae_*`` classes (levels come from the model, confidence 0.9).

    Raises
    ------
    RuntimeError
        When the package or its weights are not installed.
    """
    ok, why = totalsegmentator_available()
    if not ok:
        raise RuntimeError(f"segmentation backend 'totalsegmentator' unavailable: {why}")
    import nibabel as nib
    from totalsegmentator.map_to_binary import class_map
    from totalsegmentator.python_api import totalsegmentator as run

    dz, dy, dx = volume.spacing_mm
    affine = np.diag([-dx, -dy, dz, 1.0])  # RAS affine of the (x, y, z) array
    img = nib.Nifti1Image(np.transpose(volume.hu, (2, 1, 0)).astype(np.int16), affine)
    seg = np.asarray(run(img, None, roi_subset=[f"vertebrae_{lv}" for lv in LEVELS], quiet=True).dataobj)
    seg = np.transpose(seg, (2, 1, 0))
    names = {v: k for k, v in class_map["total"].items()}
    out: list[VertebraLabel] = []
    for lv in LEVELS:
        m = seg == names[f"vertebrae_{lv}"]
        if not m.any():
            continue
        k, i, j = ndi.center_of_mass(m)
        ks, is_, js = np.nonzero(m)
        bbox = (int(ks.min()), int(ks.max()) + 1, int(is_.min()), int(is_.max()) + 1, int(js.min()), int(js.max()) + 1)
        x, y, z = volume.voxel_to_patient(k, i, j)
        out.append(VertebraLabel(lv, (k, i, j), (x, y, z), (bbox[0], bbox[1] - 1), bbox,
                                 m[bbox[0]:bbox[1], bbox[2]:bbox[3], bbox[4]:bbox[5]], confidence=0.9))
    out.sort(key=lambda v: -v.z_mm)
    return SpineResult(out, [])


def get_backend(name: Backend | str = Backend.CLASSICAL) -> SpineSegmenter:
    """The segmenter for ``name``; a clear ``RuntimeError`` when TotalSegmentator is not installed."""
    b = Backend(name)
    if b is Backend.TOTALSEGMENTATOR:
        ok, why = totalsegmentator_available()
        if not ok:
            raise RuntimeError(f"segmentation backend 'totalsegmentator' unavailable: {why}")
        return totalsegmentator
    return classical
