"""QC figure of a CT extraction: mid-sagittal reformat with the levels and the L1 axial slice with the
trabecular ROI and the body-composition compartments drawn. Rendered with Pillow (no matplotlib import
cost on the fast path)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from tasks.biomarkers.spine import VertebraLabel
from tasks.dicom.volume import Volume

_COLOURS = {1: (220, 40, 40), 2: (250, 220, 0), 3: (250, 140, 0), 4: (40, 200, 220)}


def _window(a: np.ndarray, lo: float = -250.0, hi: float = 750.0) -> np.ndarray:
    return np.clip((a - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)


def qc_png(
    volume: Volume,
    vertebrae: list[VertebraLabel],
    l1_roi: np.ndarray | None = None,
    l1: VertebraLabel | None = None,
    body_labels: np.ndarray | None = None,
    height: int = 256,
) -> bytes:
    """PNG bytes: left the mid-sagittal reformat (level names at the body centres), right the L1 slice.

    ``l1_roi`` is the trabecular ROI inside ``l1.bbox``; ``body_labels`` the body-composition label image
    of the L1 slice (1 muscle, 2 IMAT, 3 VAT, 4 SAT), drawn as coloured outlines.
    """
    nz, ny, nx = volume.shape
    dz, dy, dx = volume.spacing_mm
    j = int(round(np.median([v.centre_voxel[2] for v in vertebrae]))) if vertebrae else nx // 2
    sag = _window(volume.hu[::-1, :, j])  # head at the top
    width = int(np.clip(height * (ny * dy) / max(nz * dz, 1e-6), 64, 2 * height))
    sag_img = Image.fromarray(sag).convert("RGB").resize((width, height))
    sx = sag_img.width / ny
    sz = height / nz
    d = ImageDraw.Draw(sag_img)
    for v in vertebrae:
        y = (nz - 1 - v.centre_voxel[0]) * sz
        x = v.centre_voxel[1] * sx
        d.ellipse((x - 2, y - 2, x + 2, y + 2), outline=(255, 60, 60))
        d.text((max(0, x - 40), y - 5), f"{v.level} {v.confidence:.2f}", fill=(255, 255, 0))
    if l1 is not None:
        k = int(round(l1.centre_voxel[0]))
    else:
        k = nz // 2
    ax = _window(volume.hu[k]).copy()
    rgb = np.stack([ax, ax, ax], axis=-1)
    if body_labels is not None and body_labels.shape == (ny, nx):
        # Outlines (a pixel of the label whose row neighbour above or below is not), drawn inside the
        # labels' box with a one-pixel margin: nothing outside it can be an edge.
        rows = np.nonzero(body_labels.any(axis=1))[0]
        cols = np.nonzero(body_labels.any(axis=0))[0]
        if len(rows):
            r0, r1 = max(0, rows[0] - 1), min(ny, rows[-1] + 2)
            c0, c1 = cols[0], cols[-1] + 1
            sub_lab, sub_rgb = body_labels[r0:r1, c0:c1], rgb[r0:r1, c0:c1]
            for lab, col in _COLOURS.items():
                m = sub_lab == lab
                edge = m & ~np.pad(m, 1)[2:, 1:-1] | m & ~np.pad(m, 1)[:-2, 1:-1]
                sub_rgb[edge] = col
    if l1 is not None and l1_roi is not None:
        k0, _, i0, i1, j0, j1 = l1.bbox
        kk = k - k0
        if 0 <= kk < l1_roi.shape[0]:
            sub = rgb[i0:i1, j0:j1]
            sub[l1_roi[kk]] = (0.5 * sub[l1_roi[kk]] + np.array([0, 127, 0])).astype(np.uint8)
    ax_img = Image.fromarray(rgb).resize((height, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = Image.new("RGB", (sag_img.width + height + 4, height), (0, 0, 0))
    out.paste(sag_img, (0, 0))
    out.paste(ax_img, (sag_img.width + 4, 0))
    buf = io.BytesIO()
    out.save(buf, format="PNG", optimize=False, compress_level=1)  # fast; the figure is small
    return buf.getvalue()
