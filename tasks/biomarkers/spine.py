"""Find the vertebral column in an axial CT volume, separate vertebral bodies from discs and label levels.

Classical pipeline (no model weights), run on a ~2 mm downsampled copy of the volume (filled while the
volume is read, see :meth:`tasks.dicom.volume.Volume.block_means`), with per-slice morphology on 3-D
blocks (:mod:`tasks.biomarkers.morphology`) rather than Python loops over slices:

1. body outline per slice (air threshold), spine window: posterior-central part of the body where bone
   (> 180 HU) is present in most slices;
2. per slice, the column centre (largest inscribed radius of the hole-filled bone mask in the window)
   and two cues for "inside a vertebral body": the cortical shell is brighter than the core (median over
   anterior rays of the brightest sample minus the core mean; ~0 in discs and through endplates, whatever
   the bone density, and continuous under partial volume), and the bone cross-section is not narrower than
   ~2/3 of the nearest bodies' (discs leave only posterior elements). Runs of body slices are bodies;
3. anatomy for the labels: ribs articulate with thoracic vertebrae only, so the last body with bone in the
   posterolateral rib band (thick blobs such as enhanced kidneys removed by an opening) is T12; the
   sacrum (the lowest wide bone, continuous with the iliac wings) lies below L5. A gap of about two
   spacings between found bodies holds a body the detector missed (a collapsed one, most often): it is
   put there (``interpolated_body``) before the levels are counted.
   When both cues are present they must agree (five lumbar bodies between them); otherwise the labels get a
   low confidence and a flag (``transitional_anatomy_suspected``, ``no_anatomical_anchor``, ...).

Voxel coordinates are (k, i, j) = (slice, row, column) of :class:`tasks.dicom.volume.Volume`, whose array
is canonical: k feet->head, i anterior->posterior, j right->left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from schemas.enums import StrValueEnum
from tasks.biomarkers import morphology as morph
from tasks.biomarkers.distance import edt_2d
from tasks.dicom.volume import Volume, block_mean, grid_factors

LEVELS: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
# Labels above T10 are produced when the column extends higher, for counting; only T10..L5 are measured.
ALL_LEVELS: tuple[str, ...] = tuple(f"T{i}" for i in range(1, 13)) + tuple(f"L{i}" for i in range(1, 6))

BONE_HU = 180.0  # cortical / dense bone threshold on the ~2 mm grid (partial volume lowers the cortex)
RIB_HU = 180.0
MAX_BODY_RADIUS_MM = 35.0
SHELL_MIN_HU = 60.0  # shell minus core: well above noise on the ~2 mm grid
#: A gap between two found bodies at least this many times the mean of the gaps beside it holds a body the
#: detector missed (a missed body makes it ~1.9-2x; a collapsed or short body beside normal ones <= ~1.5x).
MISSED_BODY_GAP_RATIO = 1.7
CLOSE_BODY_RATIO = 0.5  # features closer than this share of the median spacing are one bone (_join_close)
_DISK3_R = 2.3  # morph.disk_rows(2.3, 2.3): the 5x5 square without its corners


class SpineFlag(StrValueEnum):
    """Reasons for doubt in the level labels; accepts the member or its string value."""

    NO_SPINE_FOUND = "no_spine_found"
    NO_ANATOMICAL_ANCHOR = "no_anatomical_anchor"
    LAST_RIB_NOT_IN_VIEW = "last_rib_not_in_view"
    SACRUM_NOT_IN_VIEW = "sacrum_not_in_view"
    TRANSITIONAL_ANATOMY_SUSPECTED = "transitional_anatomy_suspected"
    PARTIAL_BODY = "partial_body"
    IRREGULAR_SPACING = "irregular_vertebral_spacing"
    INTERPOLATED_BODY = "interpolated_body"



@dataclass
class VertebraLabel:
    """One vertebral body found in a volume.

    Attributes
    ----------
    level : anatomical level, "T1".."L5" (``LEVELS`` are the ones measured downstream).
    centre_voxel : (k, i, j) fractional voxel index of the body centre.
    centre_mm : patient (x, y, z) of the body centre, mm (LPS).
    z_range : (k_first, k_last) slices of the body, inclusive.
    bbox : (k0, k1, i0, i1, j0, j1) half-open voxel box around the body.
    body_mask : boolean mask of the body inside ``bbox`` (full resolution), or None.
    radius_mm : largest inscribed radius of the body in its central slices (lateral half-width scale).
    has_rib : whether a rib-like bone was found in the posterolateral band at this body's level.
    confidence : 0..1 confidence in ``level``.
    flags : reasons for doubt.
    """

    level: str
    centre_voxel: tuple[float, float, float]
    centre_mm: tuple[float, float, float]
    z_range: tuple[int, int]
    bbox: tuple[int, int, int, int, int, int]
    body_mask: np.ndarray | None = None
    radius_mm: float = 0.0
    has_rib: bool = False
    confidence: float = 0.0
    flags: list[str] = field(default_factory=list)

    @property
    def z_mm(self) -> float:
        """Patient z of the body centre (mm)."""
        return self.centre_mm[2]


@dataclass
class SpineGrid:
    """The downsampled working copy: HU array, zoom factors and per-slice body outline."""

    hu: np.ndarray
    fz: int
    fy: int
    fx: int
    spacing_mm: tuple[float, float, float]
    body: np.ndarray  # bool (z, y, x)


def downsample(volume: Volume, target_mm: float = 2.0) -> SpineGrid:
    """Block-average ``volume`` to about ``target_mm`` voxels (integer factors, never upsampled)."""
    dz, dy, dx = volume.spacing_mm
    fz, fy, fx = grid_factors(volume.shape, volume.spacing_mm, target_mm)
    low = volume.block_means(fz, fy, fx)  # computed while the volume was read, when it was
    return SpineGrid(low, fz, fy, fx, (dz * fz, dy * fy, dx * fx), body_outline(low))


def body_outline(low: np.ndarray, factor: int = 4) -> np.ndarray:
    """Per-slice body mask of a ~2 mm grid: > -400 HU, the largest component, holes filled.

    Computed on a ``factor`` times coarser copy (~8 mm; the outline only has to tell the body from air,
    the table and pads, and is used only to keep bone inside the body) and expanded back; a plus-shaped
    opening cuts the table and thin pads off first.
    """
    oz, oy, ox = low.shape
    f = factor if oy >= 4 * factor and ox >= 4 * factor else 1
    coarse = block_mean(low, 1, f, f) if f > 1 else low
    m = morph.opening(coarse > -400.0, 1.0, 1.0)
    body = morph.fill_holes(morph.largest_per_slice(m))
    if f == 1:
        return body
    full = np.zeros((oz, oy, ox), dtype=bool)
    cy, cx = body.shape[1], body.shape[2]
    # Columns repeated on the coarse rows, then each coarse row broadcast over its f full rows (whole rows
    # at a time: a broadcast over a short last axis is ten times slower).
    up = np.repeat(body, f, axis=2)
    full[:, : cy * f, : cx * f].reshape(oz, cy, f, cx * f)[...] = up[:, :, None, :]
    return full


def _median_index(counts: np.ndarray) -> float:
    """Median of the indices ``i`` repeated ``counts[i]`` times (``np.median(np.repeat(arange, counts))``)."""
    cum = np.cumsum(counts)
    n = int(cum[-1])
    a = int(np.searchsorted(cum, (n - 1) // 2, side="right"))
    b = int(np.searchsorted(cum, n // 2, side="right"))
    return (a + b) / 2.0


def _spine_window(g: SpineGrid) -> tuple[int, int, int, int] | None:
    """(i0, i1, j0, j1) window on the low grid around the vertebral column, or None."""
    _, sy, sx = g.spacing_mm
    bone = (g.hu > BONE_HU) & g.body
    occ = np.add.reduce(bone.view(np.uint8), axis=0, dtype=np.int32) / bone.shape[0]  # = bone.mean(axis=0)
    if not occ.any():
        return None
    # Restrict to the central band (|x - body centre| < 30 mm) and the posterior 3/4 of the body.
    yc_prof = np.nonzero(g.body.any(axis=(0, 2)))[0]
    xc = _median_index(g.body.sum(axis=(0, 1), dtype=np.int64))  # median column of the body voxels
    band = np.zeros_like(occ, dtype=bool)
    j0 = max(0, int(xc - 30.0 / sx))
    j1 = min(occ.shape[1], int(xc + 30.0 / sx) + 1)
    i_ant = int(yc_prof.min() + 0.25 * (yc_prof.max() - yc_prof.min()))
    band[i_ant:, j0:j1] = True
    sm = ndi.gaussian_filter(np.where(band, occ, 0.0), sigma=(8.0 / sy, 8.0 / sx))
    if sm.max() <= 0:
        return None
    pk = np.unravel_index(int(np.argmax(sm)), sm.shape)
    ci, cj = int(pk[0]), int(pk[1])
    # Laterally the column sits on the body's midline; the occupancy peak may be on a pedicle or rib.
    cj = int(round(xc)) if abs(cj - xc) * sx < 30.0 else cj
    # The peak sits on the posterior elements or the body: reach 75 mm forward, 50 mm back.
    ha, hp, hj = int(75.0 / sy), int(50.0 / sy), int(40.0 / sx)
    n0, n1 = int(occ.shape[0]), int(occ.shape[1])
    return (max(0, ci - ha), min(n0, ci + hp + 1), max(0, cj - hj), min(n1, cj + hj + 1))


def _slice_radius(g: SpineGrid, win: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per low slice: the largest inscribed radius (mm) of the filled bone mask and where it lies."""
    i0, i1, j0, j1 = win
    _, sy, sx = g.spacing_mm
    nz = g.hu.shape[0]
    radius = np.zeros(nz)
    where = np.zeros((nz, 2))
    where[:] = ((i0 + i1) / 2, (j0 + j1) / 2)
    # A dilation (2 px, >= 4 mm) seals the thin, partial-volumed or aliased cortex so the filled ring
    # becomes the body (a closing would reopen gaps wider than its radius). Radii are 2 px smaller.
    m = morph.fill_holes(morph.dilate(g.hu[:, i0:i1, j0:j1] > BONE_HU, _DISK3_R, _DISK3_R))
    rows_any: np.ndarray = np.asarray(m.any(axis=2))
    ny = m.shape[1]
    # The distances of each slice as on its own (the window's edge is not background): the slices are
    # stacked in one mosaic with a background row between them, which changes no distance of a slice
    # whose bone stays clear of the window's top and bottom rows (its nearest background is then on its
    # own slice, nearer than the separator); a slice whose bone reaches them is transformed alone. The
    # mosaic's left and right edges are the window's, as before. Raster order (argmax ties) is kept.
    ks = np.nonzero(rows_any.any(axis=1))[0]
    clear = ~rows_any[ks, 0] & ~rows_any[ks, -1]
    together, alone = ks[clear], ks[~clear]
    if len(together):
        stack = np.zeros((len(together), ny + 1, m.shape[2]), dtype=bool)
        stack[:, :ny] = m[together]
        dt = edt_2d(stack.reshape(-1, m.shape[2]), (sy, sx)).reshape(stack.shape)
        flat = dt.reshape(len(together), -1)
        a = np.argmax(flat, axis=1)
        radius[together] = flat[np.arange(len(together)), a]
        ii, jj = np.divmod(a, m.shape[2])
        where[together, 0] = i0 + ii
        where[together, 1] = j0 + jj
    for k in alone:
        dk = ndi.distance_transform_edt(m[k], sampling=(sy, sx))
        a1 = int(np.argmax(dk))
        ii1, jj1 = np.unravel_index(a1, dk.shape)
        radius[k] = float(dk[ii1, jj1])
        where[k] = (i0 + ii1, j0 + jj1)
    return radius, where


def _shell_contrast(g: SpineGrid, centre: np.ndarray, reach_mm: float = 28.0) -> np.ndarray:
    """Per low slice: how much brighter the body's outer shell is than its core (HU).

    From the column centre, 25 rays fan over the anterior half (right-lateral through anterior to
    left-lateral, where no posterior element, rib head or canal lies); each ray's brightest sample between
    5 mm and ``reach_mm`` is where it crosses the cortical wall. The median over the rays (robust to the
    aorta or a rib on a few rays) minus the mean of the central 6 mm disc is large inside a vertebral body
    (a cortical shell around trabecular bone, at any density), near zero in a disc (no shell) and in a slice
    through an endplate (a uniform plate). Partial volume lowers the shell but keeps it continuous.
    """
    nz = g.hu.shape[0]
    _, sy, sx = g.spacing_mm
    ang = np.linspace(0.0, np.pi, 25)  # 0 = patient right (-j), pi/2 = anterior (-i), pi = left (+j)
    rr = np.arange(5.0, reach_mm + 0.1, min(sy, sx) / 2.0)
    di = -np.outer(np.sin(ang), rr) / sy  # (n_ang, n_r) row offsets (anterior = -i)
    dj = -np.outer(np.cos(ang), rr) / sx
    core_r = 6.0
    ci_off, cj_off = np.mgrid[-int(core_r / sy) : int(core_r / sy) + 1, -int(core_r / sx) : int(core_r / sx) + 1]
    disk = (ci_off * sy) ** 2 + (cj_off * sx) ** 2 <= core_r**2
    ci_off, cj_off = ci_off[disk], cj_off[disk]
    kk = np.arange(nz, dtype=float)
    ic, jc = centre[:, 0], centre[:, 1]
    ray = ndi.map_coordinates(
        g.hu, [np.broadcast_to(kk[:, None, None], (nz, *di.shape)), ic[:, None, None] + di,
               jc[:, None, None] + dj], order=1, mode="nearest")
    core = ndi.map_coordinates(
        g.hu, [np.broadcast_to(kk[:, None], (nz, len(ci_off))), ic[:, None] + ci_off, jc[:, None] + cj_off],
        order=1, mode="nearest")
    return np.asarray(np.median(ray.max(axis=2), axis=1) - core.mean(axis=1))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) index pairs of True runs."""
    out: list[tuple[int, int]] = []
    start = None
    for k, v in enumerate(mask):
        if v and start is None:
            start = k
        elif not v and start is not None:
            out.append((start, k - 1))
            start = None
    if start is not None:
        out.append((start, len(mask) - 1))
    return out


def _merge_split(runs: list[tuple[int, int]], dz: float) -> list[tuple[int, int]]:
    """Join short runs separated by thin gaps (<= 3 mm) into one body while together they stay within
    1.3 times a typical body's height: a body whose ring opened at the basivertebral vein, or a collapsed
    (biconcave) body whose depressed endplates left only its rims and a middle piece (three runs of 6-8 mm
    within 24 mm), not a disc (discs are >= 6 mm and leave both neighbours full height). The typical height
    is the median of the runs of 10 mm or more (the pieces and the endplate slivers would lower it)."""
    if len(runs) < 3:
        return runs
    tall = [(b - a + 1) * dz for a, b in runs if (b - a + 1) * dz >= 10.0]
    med = float(np.median(tall if tall else [(b - a + 1) * dz for a, b in runs]))
    out = [runs[0]]
    last_short = (runs[0][1] - runs[0][0] + 1) * dz < 0.75 * med  # the last piece joined to out[-1]
    for a, b in runs[1:]:
        pa, pb = out[-1]
        gap = (a - pb - 1) * dz
        short = (b - a + 1) * dz < 0.75 * med
        if gap <= 3.0 and short and last_short and (b - pa + 1) * dz <= 1.3 * med:
            out[-1] = (pa, b)
        else:
            out.append((a, b))
        last_short = short
    return out


def _body_width(g: SpineGrid, k0: int, k1: int, ci: float, cj: float) -> float:
    """Width (mm) of the bone plate through the body centre (ci, cj) at the middle low slice of k0..k1.

    An opening (r ~6 mm) removes ribs and transverse processes; the sacrum with its alae is >= 95 mm wide,
    a vertebral body < 60 mm. Worked in a window of +-130 mm x +-70 mm around the centre.
    """
    _, sy, sx = g.spacing_mm
    ny, nx = g.hu.shape[1:]
    c = (int(round(ci)), int(round(cj)))
    if not (0 <= c[0] < ny and 0 <= c[1] < nx):
        return 0.0
    i0, i1 = max(0, c[0] - int(70.0 / sy)), min(ny, c[0] + int(70.0 / sy) + 1)
    j0, j1 = max(0, c[1] - int(130.0 / sx)), min(nx, c[1] + int(130.0 / sx) + 1)
    km = (k0 + k1) // 2
    m = morph.fill_holes(morph.closing(g.hu[km, i0:i1, j0:j1] > RIB_HU, _DISK3_R, _DISK3_R))
    r = max(1, int(round(6.0 / sx)))
    m = morph.opening(m, r, r)
    lab, _ = ndi.label(m)
    cl = lab[c[0] - i0, c[1] - j0]
    if not cl:
        return 0.0
    sel = np.nonzero((lab == cl).any(axis=0))[0]
    return float((sel.max() - sel.min() + 1) * sx)


def _rib_heads(g: SpineGrid, centre: np.ndarray) -> np.ndarray:
    """Per low slice: whether a rib head (a bone reaching > 70 mm lateral, approaching the column at
    30-50 mm from the midline, level with or behind the body centre) lies at that slice.

    The column itself (|x - midline| < 30 mm) is cut away first so that transverse processes, which end
    before 50 mm, become small separate pieces that never reach 70 mm.
    """
    _, sy, sx = g.spacing_mm
    nz, ny, nx = g.hu.shape
    bone = (g.hu > RIB_HU) & g.body
    jj = np.arange(nx)[None, :] - centre[:, 1][:, None]  # (z, x) offset from the midline, low voxels
    ii = np.arange(ny)[None, :] - centre[:, 0][:, None]
    dx_mm = np.abs(jj) * sx
    dy_mm = ii * sy
    bone &= ~(dx_mm < 30.0)[:, None, :]
    # Work inside the bounding box of the remaining bone (ribs, pelvis, kidneys when enhanced).
    zs, ys, xs = (np.nonzero(bone.any(axis=ax))[0] for ax in ((1, 2), (0, 2), (0, 1)))
    if not len(zs):
        return np.zeros(nz, dtype=bool)
    z0, z1, y0, y1, x0, x1 = zs[0], zs[-1] + 1, ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    dx_mm, dy_mm = dx_mm[z0:z1, x0:x1], dy_mm[z0:z1, y0:y1]
    bone = bone[z0:z1, y0:y1, x0:x1]
    # Close 1-pixel gaps first: an enhancing organ near the threshold (a kidney at low kVp in the portal
    # phase) thresholds into noise speckle, whose thin pieces would pass for ribs; closed, it is a solid
    # blob that the opening below removes. Ribs (~5 low-grid pixels thick) are unchanged.
    closed = morph.closing(bone, 1.0, 1.0)
    # Ribs are tubes ~10-12 mm thick; contrast-enhanced kidneys (200+ HU at low kVp, arterial phase) and
    # other thick blobs survive an in-plane opening of ~16 mm diameter and are removed before the rib test.
    bone &= ~morph.opening(closed, 8.0 / sy, 8.0 / sx)
    lab, n = ndi.label(bone)
    out = np.zeros(nz, dtype=bool)
    if n == 0:
        return out
    # Lateral reach of each component.
    far = np.zeros(n + 1, dtype=bool)
    far[lab[(dx_mm > 70.0)[:, None, :] & bone]] = True
    far[0] = False
    head_zone = ((dx_mm >= 30.0) & (dx_mm <= 50.0))[:, None, :] & ((dy_mm >= -15.0) & (dy_mm <= 35.0))[:, :, None]
    out[z0:z1] = (head_zone & far[lab]).any(axis=(1, 2))
    return out


@dataclass
class SpineResult:
    """Vertebrae found in a volume and the series-level labelling flags."""

    vertebrae: list[VertebraLabel]
    flags: list[str]
    sacrum_z_mm: float | None = None


Feature = tuple[int, int, float, float, bool, float, bool, float]  # k0, k1, ci, cj, rib, width, partial, rmax


def _mid(f: Feature) -> float:
    """Centre of a feature along the spine (low-grid slices)."""
    return 0.5 * (f[0] + f[1])


def _sacrum_below(g: SpineGrid, feats: list[Feature], slivers: list[tuple[int, int]],
                  centre: np.ndarray) -> int | None:
    """The sacrum when only its top is in view: a sliver of body-like slices (too short for a body) below
    the lowest body, as wide as the sacrum with its alae. It is appended to ``feats`` (the lowest feature,
    as a sacrum found as a body is) and its index returned; None when there is none.

    The sacrum's body cue weakens below S1 (its bone turns into the narrowing sacral canal and foramina),
    so a series that ends 2-4 cm below L5 often shows it only as such a sliver; without it the levels hang
    on the rib cue alone, which enhanced kidneys can fool.
    """
    lowest = min(f[0] for f in feats)
    for k0, k1 in sorted(slivers, key=lambda r: -r[0]):
        if k1 >= lowest:
            continue
        ci, cj = np.median(centre[k0 : k1 + 1], axis=0)
        width = _body_width(g, k0, k1, float(ci), float(cj))
        if width >= 95.0:
            feats.append((k0, k1, float(ci), float(cj), False, width, k0 == 0, 0.0))
            return len(feats) - 1
    return None


def _join_close(feats: list[Feature], centre: np.ndarray, dz: float) -> list[Feature]:
    """Join neighbouring features (head to feet) whose centres lie closer than ``CLOSE_BODY_RATIO`` of
    the median spacing of the centres: pieces of one bone, not two bodies. A collapsed body's rims apart
    from its middle (a grade 3 biconcave L3: 6 mm above 16 mm, 15 mm between their centres where bodies
    lie 33 mm apart); two real bodies, one of them crushed to 8 mm, still lie a disc and two half bodies
    (about 0.6 of the spacing) apart. (The top of S1 apart from its alae can lie further out: see
    :func:`_s1_top`.)"""
    if len(feats) < 4:
        return feats
    mids = np.array([_mid(f) * dz for f in feats])
    limit = CLOSE_BODY_RATIO * float(np.median(-np.diff(mids)))
    out = [feats[0]]
    for f in feats[1:]:
        p = out[-1]
        if (_mid(p) - _mid(f)) * dz < limit:
            k0, k1 = min(p[0], f[0]), max(p[1], f[1])
            ci, cj = np.median(centre[k0 : k1 + 1], axis=0)
            out[-1] = (k0, k1, float(ci), float(cj), p[4] or f[4], max(p[5], f[5]), p[6] or f[6], max(p[7], f[7]))
        else:
            out.append(f)
    return out


def _s1_top(feats: list[Feature], sacrum: int, dz: float) -> bool:
    """Whether the feature just above the sacrum (``feats[sacrum - 1]``, head to feet) is the top of S1: less
    than half a typical body's height and nearer the body above it than 0.75 of the typical spacing of
    the bodies' centres. The S1 body shows the shell cue for a few slices above the alae, which come
    lower (6 mm 2 cm above the alae on a portal-venous series); counted as L5, it named every level one
    too high. A real L5, even crushed by 40%, lies a disc and two half bodies from L4."""
    if sacrum < 4:
        return False
    heights = [(f[1] - f[0] + 1) * dz for f in feats[: sacrum - 1]]
    mids = [_mid(f) * dz for f in feats[:sacrum]]
    spacing = float(np.median(-np.diff(mids[:-1])))
    piece = feats[sacrum - 1]
    short = (piece[1] - piece[0] + 1) * dz < 0.5 * float(np.median(heights))
    return bool(short and mids[-2] - mids[-1] < 0.75 * spacing)


def _fill_gaps(feats: list[Feature], end: int, ribs_z: np.ndarray) -> tuple[list[Feature], set[int]]:
    """Put a body where the detector missed one: between two found bodies (``feats[:end]``, head to feet)
    whose centres lie :data:`MISSED_BODY_GAP_RATIO` or more times the mean of the neighbouring gaps apart.

    A severely collapsed body (a grade 3 wedge keeps a third of its anterior height) can lose the
    cortical-shell contrast the detector looks for; counted past it, every level above it is named one
    level too low. Each missed body gets the mean height and radius of the two bodies around it, its centre
    and column position evenly between them, and the rib cue of its own slices. Returns the features with
    the inserted ones, and the indices of those.
    """
    z = [_mid(f) for f in feats[:end]]
    gaps = [z[k] - z[k + 1] for k in range(len(z) - 1)]
    out: list[Feature] = []
    inserted: set[int] = set()
    for k, f in enumerate(feats):
        out.append(f)
        if k >= len(gaps):
            continue
        beside = [gaps[j] for j in (k - 1, k + 1) if 0 <= j < len(gaps)]
        if not beside:
            continue
        spacing = float(np.mean(beside))
        if gaps[k] < MISSED_BODY_GAP_RATIO * spacing:
            continue
        nxt = feats[k + 1]
        missing = int(round(gaps[k] / spacing)) - 1
        half = 0.25 * ((f[1] - f[0]) + (nxt[1] - nxt[0]))
        for t in range(1, missing + 1):
            w = t / (missing + 1)
            zc = z[k] - w * gaps[k]
            k0, k1 = int(round(zc - half)), int(round(zc + half))
            rib = bool(ribs_z[max(0, k0 - 1) : k1 + 2].any())
            inserted.add(len(out))
            out.append((k0, k1, (1 - w) * f[2] + w * nxt[2], (1 - w) * f[3] + w * nxt[3], rib, 0.0, False,
                        0.5 * (f[7] + nxt[7])))
    return out, inserted


def _label(n: int, rib: list[bool], sacrum: int | None) -> tuple[list[str | None], float, list[str]]:
    """Level names for ``n`` bodies ordered head->feet, from the rib and sacrum cues."""
    flags: list[str] = []
    t12: int | None = None
    seen_rib = False
    for idx in range(n):
        if rib[idx]:
            seen_rib = True
            if idx + 1 < n and not rib[idx + 1]:
                t12 = idx
                break
        elif seen_rib:
            break
    if t12 is not None and sacrum is not None and t12 >= sacrum - 2:
        t12 = None  # "ribs" directly above the sacrum are iliac wings
    l5 = sacrum - 1 if sacrum is not None and sacrum >= 1 else None
    anchor: int | None = None
    if t12 is not None and l5 is not None:
        if l5 - t12 == 5:
            anchor, conf = t12 - ALL_LEVELS.index("T12"), 0.95
        else:
            flags.append(SpineFlag.TRANSITIONAL_ANATOMY_SUSPECTED.value)
            anchor, conf = l5 - ALL_LEVELS.index("L5"), 0.35
    elif t12 is not None:
        flags.append(SpineFlag.SACRUM_NOT_IN_VIEW.value)
        anchor, conf = t12 - ALL_LEVELS.index("T12"), 0.85
    elif l5 is not None:
        flags.append(SpineFlag.LAST_RIB_NOT_IN_VIEW.value)
        anchor, conf = l5 - ALL_LEVELS.index("L5"), 0.8
    else:
        flags.append(SpineFlag.NO_ANATOMICAL_ANCHOR.value)
        conf = 0.15
        # Guess: all rib-bearing -> the lowest is T12; none -> the highest is L1.
        anchor = (n - 1 - ALL_LEVELS.index("T12")) if all(rib) and n else -ALL_LEVELS.index("L1")
    names: list[str | None] = []
    for idx in range(n):
        pos = idx - anchor  # index in ALL_LEVELS counted head->feet
        names.append(ALL_LEVELS[pos] if 0 <= pos < len(ALL_LEVELS) else None)
    return names, conf, flags


def _upper_percentile(x: np.ndarray, q: float) -> np.ndarray:
    """``np.percentile(x, q, axis=1)`` (linear interpolation) of the rows of ``x`` for a high ``q``, found
    among each row's top values: a threshold from every 8th value lies below the wanted rank, the values
    above it hold the rank (checked; a row where they do not is done whole), and only those are
    partitioned."""
    nk, n = x.shape
    pos = q / 100.0 * (n - 1)
    lo = int(np.floor(pos))
    frac = pos - lo
    need = n - lo  # the values of rank lo and above
    sample = x[:, ::8]
    r = max(0, sample.shape[1] - 1 - int(np.ceil(4.0 * need / 8.0)))
    t = np.partition(sample, r, axis=1)[:, r]
    out = np.empty(nk)
    for k in range(nk):
        row = x[k]
        c = row[row >= t[k]]
        if c.size < need:
            c, j = row, lo
        else:
            j = c.size - need
        p = np.partition(c, (j, min(j + 1, c.size - 1)))
        a, b = float(p[j]), float(p[min(j + 1, c.size - 1)])
        out[k] = a + (b - a) * frac
    return out


def _body_mask(volume: Volume, bbox: tuple[int, int, int, int, int, int], ci: float, cj: float) -> np.ndarray:
    """Full-resolution body mask inside ``bbox``, slice by slice: the cortical ring (threshold halfway
    between the trabecular core and the densest bone of the box) is sealed by a small closing, the hole
    holding the centre is the trabecular interior, and a 1.5 mm dilation adds the cortex back. The canal
    is a different hole, so it is never part of the body. Slices whose ring is open stay empty."""
    k0, k1, i0, i1, j0, j1 = bbox
    _, dy, dx = volume.spacing_mm
    sub = volume.hu[k0:k1, i0:i1, j0:j1]
    out = np.zeros(sub.shape, dtype=bool)
    c = (int(round(ci)) - i0, int(round(cj)) - j0)
    if not (0 <= c[0] < sub.shape[1] and 0 <= c[1] < sub.shape[2]):
        return out
    r = 2 if dx > 1.2 else max(2, int(round(2.5 / dx)))  # seals gaps of an aliased cortex (2-3 px)
    disk = float(np.sqrt(r * r + 0.5))  # the pixels with dy^2 + dx^2 <= r^2 + 0.5
    rb = max(1, int(round(1.5 / dx)))
    back = float(np.sqrt(rb * rb + 0.5))
    core_r = max(1, int(round(4.0 / dx)))
    nk = sub.shape[0]
    if nk == 0:
        return out
    core = sub[:, max(0, c[0] - core_r) : c[0] + core_r + 1, max(0, c[1] - core_r) : c[1] + core_r + 1]
    med = np.median(core.reshape(nk, -1), axis=1)
    top = _upper_percentile(sub.reshape(nk, -1), 99.5)
    thr = np.maximum(BONE_HU, med + 0.4 * (top - med)).astype(np.float32)
    ring = morph.dilate(sub > thr[:, None, None], disk, disk)
    holes, nh = ndi.label(~ring, structure=morph.IN_PLANE4)
    border = np.zeros(nh + 1, dtype=bool)
    for edge in (holes[:, 0, :], holes[:, -1, :], holes[:, :, 0], holes[:, :, -1]):
        border[edge.ravel()] = True
    h = holes[:, c[0], c[1]]
    if nh and (border[h] | (h == 0)).all():
        # The centre missed the body on every slice (e.g. it sits in the canal or on the cortex): take the
        # largest enclosed hole of each slice whose centre lies within 25 mm of it instead.
        idx = np.arange(1, nh + 1)
        size = np.bincount(holes.ravel(), minlength=nh + 1)[1:]
        com = np.asarray(ndi.center_of_mass(np.ones_like(ring), holes, idx)).reshape(-1, 3)
        ok = ~border[1:] & ((((com[:, 1] - c[0]) * dy) ** 2 + ((com[:, 2] - c[1]) * dx) ** 2) <= 25.0**2)
        h = np.zeros(nk, dtype=np.int64)
        for lab_ in idx[ok][np.argsort(size[ok], kind="stable")]:  # larger holes last: they win
            h[int(round(com[lab_ - 1, 0]))] = lab_
    interior = (holes == h[:, None, None]) & (h > 0)[:, None, None]
    # A ring that is open leaks to the border: that slice stays empty.
    interior[border[h]] = False
    return morph.dilate(morph.dilate(interior, disk, disk), back, back)


def analyse_spine(volume: Volume, *, with_masks: bool = True) -> SpineResult:
    """Find, separate and label the vertebral bodies of ``volume`` (see the module docstring).

    Parameters
    ----------
    volume : canonical HU volume from :func:`tasks.dicom.volume.build_volume`.
    with_masks : compute full-resolution body masks (costs a little time per body).

    Notes
    -----
    The labels are only as good as the anatomical cues in view: without the last rib and the sacrum the
    levels are a guess and say so (confidence <= 0.15, ``no_anatomical_anchor``). Bodies cut by the edge
    of the volume are kept for counting and flagged ``partial_body``; a body the detector missed between two
    found ones (:func:`_fill_gaps`) is put there for counting and measuring, flagged ``interpolated_body``.
    """
    g = downsample(volume)
    nz = g.hu.shape[0]
    if nz < 3:
        return SpineResult([], [SpineFlag.NO_SPINE_FOUND.value])
    win = _spine_window(g)
    if win is None:
        return SpineResult([], [SpineFlag.NO_SPINE_FOUND.value])
    radius, where = _slice_radius(g, win)
    top = float(np.percentile(radius, 90))
    if top < 8.0:
        return SpineResult([], [SpineFlag.NO_SPINE_FOUND.value])
    thr = max(6.0, 0.55 * top)
    # Smooth the column path: median of the body-centre positions, per slice, over vertebral slices.
    med = max(3, int(round(30.0 / g.spacing_mm[0]))) | 1
    centre = np.array(where, dtype=float)
    good = radius >= thr
    for ax in (0, 1):
        if good.any():
            centre[:, ax] = np.interp(np.arange(nz), np.nonzero(good)[0], centre[good, ax])
        centre[:, ax] = ndi.median_filter(centre[:, ax], size=med)
    # Bodies vs discs and endplates: a cortical shell around a darker core (see _shell_contrast). The
    # threshold is relative to the series' own bodies (partial volume scales the shell with pixel and
    # slice size), with an absolute floor well above noise.
    shell = _shell_contrast(g, centre)
    column = (radius >= 6.0) & (radius <= MAX_BODY_RADIUS_MM)
    # Discs also narrow the bone cross-section: the inscribed radius drops below ~2/3 of the nearest
    # bodies' (within one vertebral height, ~+-20 mm), whatever the absolute size of the patient.
    local = ndi.maximum_filter1d(radius, size=max(3, int(round(40.0 / g.spacing_mm[0]))) | 1)

    def bodies(sh: np.ndarray) -> np.ndarray:
        hi = float(np.percentile(sh[column], 75)) if column.any() else 0.0
        return np.asarray(column & (sh >= max(SHELL_MIN_HU, 0.4 * hi)) & (radius >= 0.65 * local))

    is_body = bodies(shell)
    # Where the largest inscribed circle lies on a body and an enhanced aorta (or a rib head) together,
    # the path runs 10-20 mm in front of the bodies for several levels and their shells go unseen. The
    # bodies found mark the column: the path through their centres (held at the ends) is tried as well,
    # and each slice keeps the centre that shows the stronger shell.
    kb = np.nonzero(is_body)[0]
    path = centre  # the rib heads are looked for from the first path (their search was set on it)
    if len(kb) >= 3:
        along = np.empty_like(centre)
        for ax in (0, 1):
            along[:, ax] = ndi.median_filter(np.interp(np.arange(nz), kb, centre[kb, ax]), size=med)
        shell2 = _shell_contrast(g, along)
        better = shell2 > shell
        centre = np.where(better[:, None], along, centre)
        shell = np.where(better, shell2, shell)
        is_body = bodies(shell)
    # A vertebral body's inscribed radius is 10-30 mm; a filled skull or pelvis ring is far larger.
    runs = _merge_split(_runs(is_body), g.spacing_mm[0])
    ribs_z = _rib_heads(g, path)
    dzl = g.spacing_mm[0]
    feats: list[Feature] = []
    slivers: list[tuple[int, int]] = []
    for k0, k1 in runs:
        height = (k1 - k0 + 1) * dzl
        if height < 6.0:
            slivers.append((k0, k1))
            continue  # an endplate or osteophyte sliver, not a body
        ci, cj = np.median(centre[k0 : k1 + 1], axis=0)
        rib = bool(ribs_z[max(0, k0 - 1) : k1 + 2].any())
        width = _body_width(g, k0, k1, float(ci), float(cj))
        partial = k0 == 0 or k1 == nz - 1
        feats.append((k0, k1, float(ci), float(cj), rib, width, partial, float(np.max(radius[k0 : k1 + 1]))))
    if not feats:
        return SpineResult([], [SpineFlag.NO_SPINE_FOUND.value])
    feats.sort(key=lambda f: -f[0])  # head -> feet
    feats = _join_close(feats, centre, dzl)
    # The sacrum (>= 95 mm wide with its alae; a vertebral body is < 60 mm) is the lowest bone of the
    # column: only a wide block at the feet end counts (ribs fused to a thoracic body in the closing are
    # wide too, but never below lumbar bodies).
    sacrum = None
    idx = len(feats) - 1
    while idx >= 1 and feats[idx][5] >= 95.0:
        sacrum = idx
        idx -= 1
    if sacrum is None:
        sacrum = _sacrum_below(g, feats, slivers, centre)
    if sacrum is not None and _s1_top(feats, sacrum, dzl):
        sacrum -= 1
    feats, inserted = _fill_gaps(feats, len(feats) if sacrum is None else sacrum, ribs_z)
    if sacrum is not None:
        sacrum += len(inserted)
    names, conf, flags = _label(len(feats), [f[4] for f in feats], sacrum)
    sacrum_z = None
    out: list[VertebraLabel] = []
    fz, fy, fx = g.fz, g.fy, g.fx
    ny, nx = volume.shape[1:]
    for idx, (k0, k1, ci, cj, rib, _, partial, rmax) in enumerate(feats):
        K0, K1 = k0 * fz, min(volume.shape[0] - 1, (k1 + 1) * fz - 1)
        kc = (K0 + K1) / 2.0
        Ic, Jc = ci * fy + (fy - 1) / 2.0, cj * fx + (fx - 1) / 2.0
        if sacrum is not None and idx >= sacrum:
            if idx == sacrum:
                sacrum_z = volume.z_mm(kc)
            continue
        name = names[idx]
        if name is None:
            continue
        hi = int(40.0 / volume.spacing_mm[1])
        hj = int(40.0 / volume.spacing_mm[2])
        bbox = (K0, K1 + 1, max(0, int(Ic) - hi), min(ny, int(Ic) + hi + 1), max(0, int(Jc) - hj),
                min(nx, int(Jc) + hj + 1))
        vflags = list(flags)
        c = conf
        if partial:
            vflags.append(SpineFlag.PARTIAL_BODY.value)
            c *= 0.7
        if idx in inserted:
            vflags.append(SpineFlag.INTERPOLATED_BODY.value)
            c *= 0.6
        x, y, _ = volume.voxel_to_patient(kc, Ic, Jc)
        out.append(
            VertebraLabel(
                level=name, centre_voxel=(kc, Ic, Jc), centre_mm=(x, y, volume.z_mm(kc)), z_range=(K0, K1),
                bbox=bbox, body_mask=_body_mask(volume, bbox, Ic, Jc) if with_masks else None,
                radius_mm=rmax, has_rib=rib, confidence=round(c, 3), flags=vflags,
            )
        )
    zs = sorted(v.z_mm for v in out)
    if len(zs) >= 3:
        gaps = np.diff(zs)
        if gaps.max() > 1.8 * np.median(gaps):
            flags.append(SpineFlag.IRREGULAR_SPACING.value)
            for v in out:
                v.flags.append(SpineFlag.IRREGULAR_SPACING.value)
                v.confidence = round(v.confidence * 0.6, 3)
    out.sort(key=lambda v: -v.z_mm)
    return SpineResult(out, flags, sacrum_z)


def find_vertebrae(volume: Volume) -> list[VertebraLabel]:
    """Vertebral bodies of ``volume`` with their levels, centres, boxes, masks and confidences.

    Parameters
    ----------
    volume : canonical HU volume (:class:`tasks.dicom.volume.Volume`).

    Returns
    -------
    list of :class:`VertebraLabel`, head to feet; empty when no column is found.

    Notes
    -----
    Series-level flags (why the labels may be wrong) are in :func:`analyse_spine`'s result; each label
    also carries them in ``flags``.
    """
    return analyse_spine(volume).vertebrae
