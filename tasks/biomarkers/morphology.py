"""Fast in-plane binary morphology for stacks of axial slices (arrays ``(z, y, x)`` or single ``(y, x)``).

scipy.ndimage's binary erosion/dilation test every structuring-element offset at every voxel, so a disk of
radius 4 px on a 3-D block costs ~80 passes; a hole fill iterates until convergence. The same results
come much cheaper from separable 1-D minimum/maximum filters (a disk is the union of horizontal segments,
one per row offset) and from connected-component labels (a hole is a background component that does not
reach the slice border). Written by hand because no well-kept library offers per-slice disk morphology on
3-D blocks; each function says which scipy call it equals.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

# Per-slice 4-connectivity (no connection between slices) for 3-D label calls.
IN_PLANE4 = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE4[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
IN_PLANE8 = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE8[1] = True


def _as3(m: np.ndarray) -> np.ndarray:
    return m[None] if m.ndim == 2 else m


def disk_rows(r_y: float, r_x: float) -> list[tuple[int, int]]:
    """Row offsets ``dy`` and half-widths ``w`` of an in-plane ellipse of radii ``r_y``, ``r_x`` (pixels):
    the pixel (dy, dx) is inside when ``(dy / r_y)^2 + (dx / r_x)^2 <= 1``."""
    ny = int(np.floor(r_y + 1e-9))
    out = []
    for dy in range(-ny, ny + 1):
        t = 1.0 - (dy / r_y) ** 2 if r_y > 0 else 1.0
        out.append((dy, int(np.floor(r_x * np.sqrt(max(t, 0.0)) + 1e-9))))
    return out


def _run_x(a: np.ndarray, w: int, op: str) -> np.ndarray:
    """OR (``op="max"``) or AND (``"min"``) of ``a`` over a window of ``2w + 1`` columns, border 0.

    By doubling on a zero-padded copy: windows of 1, 2, 4, ... columns, then one more step to ``2w + 1``
    (about log2(2w + 1) passes instead of 2w); the padding is the border 0.
    """
    if w == 0:
        return a.copy()
    n = a.shape[-1]
    length = 2 * w + 1
    f = np.zeros(a.shape[:-1] + (n + 2 * w,), dtype=bool)
    f[..., w : w + n] = a
    combine = np.logical_or if op == "max" else np.logical_and
    p = 1  # f[..., i] combines columns i .. i + p - 1 of the padded array
    while 2 * p <= length:
        f = combine(f[..., :-p], f[..., p:])
        p *= 2
    if p < length:
        q = length - p
        f = combine(f[..., :-q], f[..., q:])
    return f


def _combine_rows(rows: dict[int, np.ndarray], op: str, shape: tuple[int, ...]) -> np.ndarray:
    """OR/AND over row offsets dy of ``rows[w]`` shifted by dy rows (outside the array counts as 0)."""
    out = np.zeros(shape, dtype=bool) if op == "max" else np.ones(shape, dtype=bool)
    ny = shape[1]
    for dy, r in rows.items():
        if abs(dy) >= ny:
            if op == "min":
                out[:] = False
            continue
        if op == "max":
            if dy >= 0:
                out[:, : ny - dy] |= r[:, dy:]
            else:
                out[:, -dy:] |= r[:, : ny + dy]
        else:
            if dy >= 0:
                out[:, : ny - dy] &= r[:, dy:]
                out[:, ny - dy :] = False
            else:
                out[:, -dy:] &= r[:, : ny + dy]
                out[:, :-dy] = False
    return out


def _morph(m: np.ndarray, r_y: float, r_x: float, op: str) -> np.ndarray:
    a = _as3(np.asarray(m, dtype=bool))
    widths = dict(disk_rows(r_y, r_x))
    cache: dict[int, np.ndarray] = {}
    rows = {}
    for dy, w in widths.items():
        if w not in cache:
            cache[w] = _run_x(a, w, op)
        rows[dy] = cache[w]
    out = _combine_rows(rows, op, a.shape)
    return out if m.ndim == 3 else out[0]


def dilate(m: np.ndarray, r_y: float, r_x: float) -> np.ndarray:
    """In-plane dilation by the ellipse of :func:`disk_rows` (= ``ndi.binary_dilation`` with that
    structure, per slice, border 0)."""
    return _morph(m, r_y, r_x, "max")


def erode(m: np.ndarray, r_y: float, r_x: float) -> np.ndarray:
    """In-plane erosion by the ellipse of :func:`disk_rows` (= ``ndi.binary_erosion``, border 0)."""
    return _morph(m, r_y, r_x, "min")


def opening(m: np.ndarray, r_y: float, r_x: float) -> np.ndarray:
    """In-plane opening (erosion then dilation) by the ellipse of :func:`disk_rows`."""
    e = erode(m, r_y, r_x)
    if not e.any():
        return e
    return dilate(e, r_y, r_x)


def closing(m: np.ndarray, r_y: float, r_x: float) -> np.ndarray:
    """In-plane closing (dilation then erosion, = ``ndi.binary_closing``, border 0)."""
    return erode(dilate(m, r_y, r_x), r_y, r_x)


def fill_holes(m: np.ndarray) -> np.ndarray:
    """Per-slice hole filling (= ``ndi.binary_fill_holes`` of each slice, 4-connected background)."""
    a = _as3(m)
    lab, n = ndi.label(~a, structure=IN_PLANE4)
    if n == 0:
        return m.copy()
    outside = np.zeros(n + 1, dtype=bool)
    for edge in (lab[:, 0, :], lab[:, -1, :], lab[:, :, 0], lab[:, :, -1]):
        outside[edge.ravel()] = True
    outside[0] = False
    out = ~outside[lab]
    return out if m.ndim == 3 else out[0]


def hole_labels(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels of the background of ``m`` (4-connected, per slice; 0 on ``m``) and, per label, whether it
    is a hole (does not reach the slice border): ``fill_holes(m) == m | is_hole[lab]``, and each hole is
    one label (as ``ndi.label`` of the holes would number it, up to the order)."""
    a = _as3(m)
    lab, n = ndi.label(~a, structure=IN_PLANE4)
    is_hole = np.ones(n + 1, dtype=bool)
    for edge in (lab[:, 0, :], lab[:, -1, :], lab[:, :, 0], lab[:, :, -1]):
        is_hole[edge.ravel()] = False
    is_hole[0] = False
    return (lab if m.ndim == 3 else lab[0]), is_hole


def largest_per_slice(m: np.ndarray, connectivity: int = 4) -> np.ndarray:
    """The largest connected component of each slice (= per-slice ``ndi.label`` + largest; ties: the
    first in raster order)."""
    a = _as3(m)
    lab, n = ndi.label(a, structure=IN_PLANE4 if connectivity == 4 else IN_PLANE8)
    if n == 0:
        return np.zeros(m.shape, dtype=bool)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    # Labels are numbered in raster order and never span slices: slice k holds labels (top[k-1], top[k]].
    top = np.maximum.accumulate(lab.reshape(lab.shape[0], -1).max(axis=1))
    idx = np.arange(1, n + 1)
    z = np.searchsorted(top, idx)
    order = np.lexsort((idx, -sizes[1:], z))
    first = np.r_[True, z[order][1:] != z[order][:-1]]
    keep = np.zeros(n + 1, dtype=bool)
    keep[idx[order][first]] = True
    out = keep[lab]
    return out if m.ndim == 3 else out[0]


def largest(m: np.ndarray) -> np.ndarray:
    """The largest connected component of ``m`` (any dimension, face connectivity)."""
    lab, n = ndi.label(m)
    if n == 0:
        return m.copy()
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    sizes[0] = 0
    return np.asarray(lab == int(np.argmax(sizes)))


def reconstruct_dilation(seed: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Greyscale reconstruction by dilation of non-negative integer images (full connectivity), equal to
    ``skimage.morphology.reconstruction(seed, mask, method="dilation")``.

    skimage sorts the float pixel values twice (``argsort`` and ``rank_order``); integer values are their
    own ranks and a stable (radix) sort orders them ~20x faster, so this calls skimage's inner loop
    directly on the integer ranks (falling back to the public function if that loop is not importable).

    Parameters
    ----------
    seed, mask : integer arrays of the same shape, values in ``0 .. 2**32 - 1``, ``seed <= mask``.
    """
    seed = np.asarray(seed)
    mask = np.asarray(mask)
    if seed.shape != mask.shape:
        raise ValueError(f"seed {seed.shape} and mask {mask.shape} differ in shape")
    try:
        from skimage.morphology._grayreconstruct import reconstruction_loop
    except ImportError:  # pragma: no cover - another skimage layout
        from skimage.morphology import reconstruction

        return np.rint(reconstruction(seed.astype(float), mask.astype(float), method="dilation")).astype(
            np.int64)
    shape = tuple(s + 2 for s in seed.shape)
    inside: tuple[slice, ...] = tuple(slice(1, s + 1) for s in seed.shape)
    images = np.full((2, *shape), int(seed.min()) if seed.size else 0, dtype=np.uint32)
    images[0][inside] = seed
    images[1][inside] = mask
    offsets = np.mgrid[tuple(slice(-1, 2) for _ in shape)].reshape(len(shape), -1).T
    strides = np.array(images.strides[1:]) // images.itemsize
    nb = np.array([int(np.dot(strides, o)) for o in offsets if o.any()], dtype=np.int32)
    flat = images.reshape(-1)
    order = np.argsort(flat, kind="stable").astype(np.int32)[::-1]
    prev = np.full(flat.size, -1, dtype=np.int32)
    nxt = np.full(flat.size, -1, dtype=np.int32)
    prev[order[1:]] = order[:-1]
    nxt[order[:-1]] = order[1:]
    image_stride = int(np.prod(shape))
    reconstruction_loop(flat, prev, nxt, nb, int(order[0]), image_stride)
    return flat[:image_stride].reshape(shape)[inside].astype(np.int64)


def bounding_box(m: np.ndarray, pad: int = 0) -> tuple[slice, ...] | None:
    """Slices of the bounding box of ``m``'s True pixels grown by ``pad`` on every side (clipped to the
    array), or None when ``m`` is empty. Used to run a whole-image operation on the part that matters."""
    out = []
    for ax in range(m.ndim):
        idx = np.nonzero(m.any(axis=tuple(a for a in range(m.ndim) if a != ax)))[0]
        if not len(idx):
            return None
        out.append(slice(max(0, int(idx[0]) - pad), min(m.shape[ax], int(idx[-1]) + 1 + pad)))
    return tuple(out)
