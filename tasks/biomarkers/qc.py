"""QC figure of a CT extraction: mid-sagittal reformat with the levels and the L1 axial slice with the
trabecular ROI and the body-composition compartments drawn. Rendered with Pillow (no matplotlib import
cost on the fast path).

The figure is a palette PNG (one byte per pixel: :data:`GREY_LEVELS` grey levels, the same levels tinted
green for the trabecular ROI, and the outline and text colours), which encodes about three times faster
than RGB and is smaller. Each panel is windowed (-250..750 HU) and resized as a grey image first; the
outlines are then drawn at the figure's scale, so they stay one pixel wide whatever the matrix.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from tasks.biomarkers.spine import VertebraLabel
from tasks.dicom.volume import Volume

GREY_LEVELS = 120  # palette entries 0..119 grey, 120..239 the same greys tinted green (trabecular ROI)
_TINT = GREY_LEVELS
_COLOURS = {1: (220, 40, 40), 2: (250, 220, 0), 3: (250, 140, 0), 4: (40, 200, 220)}  # muscle IMAT VAT SAT
_LABEL_INDEX = {lab: 2 * GREY_LEVELS + n for n, lab in enumerate(_COLOURS)}
_MARK = 2 * GREY_LEVELS + len(_COLOURS)  # level centre marks
_TEXT = _MARK + 1  # level names


def _palette() -> list[int]:
    grey = np.rint(np.arange(GREY_LEVELS) * 255.0 / (GREY_LEVELS - 1)).astype(int)
    rgb = [(g, g, g) for g in grey] + [(g // 2, g // 2 + 127, g // 2) for g in grey]
    rgb += list(_COLOURS.values()) + [(255, 60, 60), (255, 255, 0)]
    rgb += [(0, 0, 0)] * (256 - len(rgb))
    return [c for col in rgb for c in col]


_PALETTE = _palette()
_GREY_OF_BYTE = (np.arange(256) * (GREY_LEVELS - 1) // 255).astype(np.uint8)  # 0..255 -> palette grey


def _window(a: np.ndarray, lo: float = -250.0, hi: float = 750.0) -> np.ndarray:
    return np.clip((a - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)


def _indexed(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``grey`` (uint8 window) resized bilinearly to ``size`` (width, height) as palette grey indices."""
    small = Image.fromarray(grey).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return _GREY_OF_BYTE[np.asarray(small)]


def _nearest(mask_or_labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Label image (uint8) resized to ``size`` (width, height) by nearest neighbour."""
    return np.asarray(Image.fromarray(mask_or_labels.astype(np.uint8)).resize(size, Image.Resampling.NEAREST))


def _p_image(idx: np.ndarray) -> Image.Image:
    img = Image.frombuffer("P", (idx.shape[1], idx.shape[0]), np.ascontiguousarray(idx).tobytes(), "raw", "P", 0, 1)
    img.putpalette(_PALETTE)
    return img


def _outline(lab: np.ndarray, idx: np.ndarray) -> None:
    """Draw, into ``idx``, each compartment's pixels whose row neighbour above or below is not the same
    compartment, in the compartment's colour."""
    for value, colour in _LABEL_INDEX.items():
        m = lab == value
        if not m.any():
            continue
        pad = np.pad(m, 1)
        idx[m & ~pad[2:, 1:-1] | m & ~pad[:-2, 1:-1]] = colour


def qc_png(
    volume: Volume,
    vertebrae: list[VertebraLabel],
    l1_roi: np.ndarray | None = None,
    l1: VertebraLabel | None = None,
    body_labels: np.ndarray | None = None,
    height: int = 256,
) -> bytes:
    """PNG bytes: left the mid-sagittal reformat (level names at the body centres), right the L1 slice.

    ``l1_roi`` is the trabecular ROI inside ``l1.bbox`` (tinted green); ``body_labels`` the
    body-composition label image of the L1 slice (1 muscle, 2 IMAT, 3 VAT, 4 SAT), drawn as coloured
    outlines (red, yellow, orange, cyan).
    """
    nz, ny, nx = volume.shape
    dz, dy, dx = volume.spacing_mm
    j = int(round(np.median([v.centre_voxel[2] for v in vertebrae]))) if vertebrae else nx // 2
    width = int(np.clip(height * (ny * dy) / max(nz * dz, 1e-6), 64, 2 * height))
    sag_img = _p_image(_indexed(_window(volume.hu[::-1, :, j]), (width, height)))  # head at the top
    sx = width / ny
    sz = height / nz
    d = ImageDraw.Draw(sag_img)
    for v in vertebrae:
        y = (nz - 1 - v.centre_voxel[0]) * sz
        x = v.centre_voxel[1] * sx
        d.ellipse((x - 2, y - 2, x + 2, y + 2), outline=_MARK)
        d.text((max(0, x - 40), y - 5), f"{v.level} {v.confidence:.2f}", fill=_TEXT)
    k = int(round(l1.centre_voxel[0])) if l1 is not None else nz // 2
    size = (height, height)
    ax = _indexed(_window(volume.hu[k]), size)
    if l1 is not None and l1_roi is not None:
        k0, _, i0, i1, j0, j1 = l1.bbox
        kk = k - k0
        if 0 <= kk < l1_roi.shape[0]:
            roi = np.zeros((ny, nx), dtype=bool)
            roi[i0:i1, j0:j1] = l1_roi[kk]
            ax[_nearest(roi, size) > 0] += _TINT
    if body_labels is not None and body_labels.shape == (ny, nx):
        _outline(_nearest(body_labels, size), ax)
    out = Image.new("P", (width + height + 4, height), 0)
    out.putpalette(_PALETTE)
    out.paste(sag_img, (0, 0))
    out.paste(_p_image(ax), (width + 4, 0))
    buf = io.BytesIO()
    out.save(buf, format="PNG", optimize=False, compress_level=1)  # fast; the figure is small
    return buf.getvalue()
