"""The fast per-slice morphology equals scipy.ndimage's binary operations, slice by slice."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from tasks.biomarkers import morphology as M


def _structure(r_y: float, r_x: float) -> np.ndarray:
    rows = M.disk_rows(r_y, r_x)
    ny, nx = max(abs(d) for d, _ in rows), max(w for _, w in rows)
    s = np.zeros((2 * ny + 1, 2 * nx + 1), dtype=bool)
    for dy, w in rows:
        s[dy + ny, nx - w : nx + w + 1] = True
    return s[None]


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.asarray(ndi.gaussian_filter(rng.normal(size=(5, 60, 70)), 2) > 0.05)


@pytest.mark.parametrize("r", [(1.0, 1.0), (2.3, 2.3), (3.4, 3.4), (2.5, 4.1)])
def test_disk_operations_equal_scipy(stack: np.ndarray, r: tuple[float, float]) -> None:
    s = _structure(*r)
    assert np.array_equal(M.dilate(stack, *r), ndi.binary_dilation(stack, s))
    assert np.array_equal(M.erode(stack, *r), ndi.binary_erosion(stack, s))
    assert np.array_equal(M.opening(stack, *r), ndi.binary_opening(stack, s))
    assert np.array_equal(M.closing(stack, *r), ndi.binary_closing(stack, s))
    assert np.array_equal(M.dilate(stack[0], *r), ndi.binary_dilation(stack[0], s[0]))


def test_fill_holes_and_largest_per_slice(stack: np.ndarray) -> None:
    assert np.array_equal(M.fill_holes(stack), np.stack([ndi.binary_fill_holes(x) for x in stack]))
    ref = []
    for x in stack:
        lab, n = ndi.label(x)
        sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
        ref.append(lab == int(np.argmax(sizes)) + 1 if n else x)
    assert np.array_equal(M.largest_per_slice(stack), np.stack(ref))
    assert np.array_equal(M.largest(stack[0]), ref[0])
