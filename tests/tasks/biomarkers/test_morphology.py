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


def test_reconstruct_dilation_equals_skimage() -> None:
    """Integer reconstruction by dilation = skimage's float reconstruction (2-D and 3-D), and the
    h-maxima built on it find the two peaks of a two-disk distance map."""
    from skimage.morphology import reconstruction

    from tasks.biomarkers.morphology import reconstruct_dilation

    rng = np.random.default_rng(4)
    for shape in ((23, 31), (5, 9, 11)):
        mask = rng.integers(0, 200, size=shape)
        seed = np.maximum(mask - rng.integers(0, 60, size=shape), 0)
        ref = reconstruction(seed.astype(float), mask.astype(float), method="dilation")
        np.testing.assert_array_equal(reconstruct_dilation(seed, mask), ref.astype(np.int64))
    yy, xx = np.mgrid[0:40, 0:70]
    two = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 15**2) | ((yy - 20) ** 2 + (xx - 48) ** 2 <= 12**2)
    d = np.rint(ndi.distance_transform_edt(two) * 64).astype(np.int64)
    peaks = (d - reconstruct_dilation(np.maximum(d - 64, 0), d)) >= 64
    assert ndi.label(peaks)[1] == 2
    with pytest.raises(ValueError, match="shape"):
        reconstruct_dilation(np.zeros((3, 3), int), np.zeros((3, 4), int))


def test_bounding_box() -> None:
    from tasks.biomarkers.morphology import bounding_box

    m = np.zeros((10, 12), bool)
    assert bounding_box(m) is None
    m[3:5, 7] = True
    assert bounding_box(m) == (slice(3, 5), slice(7, 8))
    assert bounding_box(m, 4) == (slice(0, 9), slice(3, 12))


def test_rectangle_erosion_equals_scipy() -> None:
    """A row segment then a column segment (as the CT texture ROI is eroded) = scipy's separable erosion,
    border 0, on random blobby stacks and half-widths."""
    rng = np.random.default_rng(3)
    for _ in range(25):
        shape = (int(rng.integers(1, 8)), int(rng.integers(3, 60)), int(rng.integers(3, 60)))
        m = ndi.binary_dilation(rng.random(shape) > 0.8, structure=np.ones((1, 3, 3), bool), iterations=2)
        ry, rx = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        ref = ndi.binary_erosion(ndi.binary_erosion(m, structure=np.ones((1, 1, 2 * rx + 1), bool)),
                                 structure=np.ones((1, 2 * ry + 1, 1), bool))
        assert np.array_equal(M.erode(M.erode(m, 0.0, float(rx)), float(ry), 0.0), ref)


def test_hole_labels_match_fill_holes_and_label() -> None:
    """Each hole of a mask is one background label: the same partition and areas as ``ndi.label`` of
    ``fill_holes(m) & ~m`` (2-D) and ``fill_holes(m) == m | is_hole[lab]`` (2-D and 3-D)."""
    rng = np.random.default_rng(5)
    for _ in range(20):
        m = ndi.binary_dilation(rng.random((4, 50, 60)) > 0.93, structure=np.ones((1, 3, 3), bool), iterations=2)
        lab, is_hole = M.hole_labels(m)
        assert np.array_equal(M.fill_holes(m), m | is_hole[lab])
        lab2, is_hole2 = M.hole_labels(m[1])
        holes = M.fill_holes(m[1]) & ~m[1]
        ref, n = ndi.label(holes)
        assert int(is_hole2.sum()) == n
        areas = np.bincount(lab2.ravel(), minlength=len(is_hole2))[is_hole2]
        assert sorted(areas.tolist()) == sorted(np.bincount(ref.ravel())[1:].tolist())
        assert np.array_equal(is_hole2[lab2], holes)
