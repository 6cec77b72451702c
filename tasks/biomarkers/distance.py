"""Exact Euclidean distance transforms for masks in the axial plane.

The ``edt`` package (seung-lab, LGPL) computes the same exact transform as
``scipy.ndimage.distance_transform_edt`` (distance of every foreground pixel to the nearest background
pixel, anisotropic spacing, the array's edge not counted as background) about 2.5x faster on slice-sized
masks, in float32; scipy is kept for small masks, where its lower call overhead wins (and for stacks of
small slices: ``edt`` on a stack with a heavily weighted slice axis measured twice as slow as scipy slice by
slice).
"""

from __future__ import annotations

import edt as _edt
import numpy as np
from scipy import ndimage as ndi

SMALL = 16_384  # pixels: below this scipy's transform is the faster one


def edt_2d(mask: np.ndarray, sampling: tuple[float, float]) -> np.ndarray:
    """Distance (mm) of each ``True`` pixel of a 2-D mask to the nearest ``False`` pixel; 0 on background.

    Equals ``scipy.ndimage.distance_transform_edt(mask, sampling=sampling)`` to float32 rounding.
    """
    if mask.ndim != 2:
        raise ValueError(f"edt_2d needs a 2-D mask, got shape {mask.shape}")
    if mask.size < SMALL:
        return ndi.distance_transform_edt(mask, sampling=sampling)
    return _edt.edt(np.ascontiguousarray(mask, dtype=bool), anisotropy=tuple(float(s) for s in sampling),
                    black_border=False, parallel=1)

