"""Build a CT volume in Hounsfield units from the files of one or more series.

Each file is read once (:mod:`tasks.dicom.slice_reader`): its bytes are parsed by the fast header
reader (only the tags needed here are decoded) and, for the chosen series, native pixel data is taken
straight from the same bytes with ``numpy.frombuffer``; compressed syntaxes and anything the fast reader
does not handle go through pydicom (and pylibjpeg). Slices are ordered by their position along the slice
normal and the array is put in a canonical orientation: axis 0 runs from feet to head (patient z
increasing), axis 1 from anterior to posterior, axis 2 from the patient's right to left (DICOM LPS). Irregularities (gantry tilt, missing slices, mixed
spacing, localizers, duplicates) are flagged on the volume rather than raised.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from pydicom.errors import InvalidDicomError

from schemas.enums import StrValueEnum
from tasks.dicom.fastheader import Truncated
from tasks.dicom.slice_reader import Arena, Payload, decode_into, parse, read_bytes

Opener = Callable[[str], IO[bytes]]  # the same alias as tasks.dicom.slice_reader.Opener
"""Opens a path or URL for binary reading (e.g. ``fsspec.open(...).open``); default: the local file."""


class VolumeFlag(StrValueEnum):
    """Irregularities found while building a volume; accepts the member or its string value."""

    GANTRY_TILT = "gantry_tilt"
    MISSING_SLICES = "missing_slices"
    MIXED_SPACING = "mixed_spacing"
    LOCALIZER_EXCLUDED = "localizer_excluded"
    DUPLICATE_SLICES = "duplicate_slices"
    THICKNESS_SPACING_MISMATCH = "thickness_spacing_mismatch"
    NON_AXIAL = "non_axial"
    REORIENTED = "reoriented"
    FEW_SLICES = "few_slices"
    UNREADABLE_SLICES = "unreadable_slices"
    SINGLE_SLICE = "single_slice"



_PAYLOAD_BUDGET = 2 * 1024**3  # at most this many file bytes are kept between the passes; the rest are re-read


class NoCTSeries(ValueError):
    """The files hold readable DICOM but no CT series (e.g. only radiographs or DXA)."""


@dataclass(frozen=True)
class SliceHeader:
    """Header fields of one instance that volume building and series selection need."""

    path: str
    series_instance_uid: str
    study_instance_uid: str
    sop_instance_uid: str
    modality: str
    image_type: tuple[str, ...]
    rows: int
    columns: int
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    kvp: float | None
    contrast_agent: str | None
    gantry_tilt_deg: float
    manufacturer: str
    kernel: str
    series_description: str
    number_of_frames: int

    @property
    def is_localizer(self) -> bool:
        tokens = {t.upper() for t in self.image_type}
        return bool(tokens & {"LOCALIZER", "SCOUT", "TOPOGRAM", "SURVIEW"}) or "LOCALIZER" in (
            self.series_description.upper()
        )


@dataclass
class Volume:
    """A CT volume in HU with its geometry and provenance.

    Attributes
    ----------
    hu : (nz, ny, nx) float32 Hounsfield units; axis 0 feet->head, 1 anterior->posterior, 2 right->left.
    spacing_mm : (dz, dy, dx) voxel size; dz is the median slice spacing (see ``slice_z_mm`` for exact z).
    origin_mm : patient (x, y, z) of voxel (0, 0, 0), LPS.
    slice_z_mm : patient z of each slice (length nz), increasing.
    """

    hu: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    slice_z_mm: np.ndarray
    series_instance_uid: str
    study_instance_uid: str = ""
    kvp: float | None = None
    contrast_agent: str | None = None
    manufacturer: str = ""
    kernel: str = ""
    slice_thickness_mm: float | None = None
    flags: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.hu.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    def z_mm(self, k: float) -> float:
        """Patient z (mm) at (fractional) slice index ``k``."""
        n = len(self.slice_z_mm)
        if n > 1 and 0.0 <= k <= n - 1:
            return float(np.interp(k, np.arange(n, dtype=float), self.slice_z_mm))
        if k < 0 or n == 1:
            return float(self.slice_z_mm[0] + k * self.spacing_mm[0])
        return float(self.slice_z_mm[-1] + (k - (n - 1)) * self.spacing_mm[0])

    def voxel_to_patient(self, k: float, i: float, j: float) -> tuple[float, float, float]:
        """Patient (x, y, z) in mm of voxel (slice k, row i, column j)."""
        return (
            self.origin_mm[0] + j * self.spacing_mm[2],
            self.origin_mm[1] + i * self.spacing_mm[1],
            self.z_mm(k),
        )

    def slice_index(self, z_mm: float) -> int:
        """Index of the slice nearest to patient z ``z_mm``."""
        return int(np.argmin(np.abs(self.slice_z_mm - z_mm)))

    def block_means(self, fz: int, fy: int, fx: int) -> np.ndarray:
        """:func:`block_mean` of ``hu`` over ``fz x fy x fx`` blocks, cached (the builder fills the ~2 mm
        grid of :func:`grid_factors` while it reads the slices, when each slice is still in cache).

        Notes
        -----
        The cache assumes ``hu`` is not modified in place afterwards.
        """
        cache = self.__dict__.setdefault("_block_means", {})
        key = (fz, fy, fx)
        if key not in cache:
            cache[key] = block_mean(self.hu, fz, fy, fx)
        return np.asarray(cache[key])


def grid_factors(shape: tuple[int, int, int], spacing_mm: tuple[float, float, float],
                 target_mm: float = 2.0) -> tuple[int, int, int]:
    """Integer block factors (z, y, x) that bring ``spacing_mm`` to about ``target_mm`` (never below 1;
    z falls back to 1 when the volume has fewer slices than the factor)."""
    fz, fy, fx = (max(1, int(round(target_mm / s))) if s > 0 else 1 for s in spacing_mm)
    return (1 if shape[0] < fz else fz), fy, fx


def block_mean(a: np.ndarray, fz: int, fy: int, fx: int, *, out: np.ndarray | None = None,
               work: np.ndarray | None = None) -> np.ndarray:
    """Mean over ``fz x fy x fx`` blocks of ``a`` (trailing partial blocks dropped), float32.

    ``out`` (optional) receives the result (float32, the output shape); ``work`` (optional) is a float32
    scratch buffer of at least the size of one chunk's row sums, reused by callers that call this slice by
    slice (the volume builder), so that nothing is allocated per call.

    A few slabs at a time (about a million input voxels, hot in cache; one slab of a 512 x 512 volume,
    many of a small grid): the slices of a slab, then the rows, are added by reductions over reshaped
    views (whole rows at a time), then the columns as strided views, which is much faster than a mean
    over a 6-D reshaped view. The sums run in the same order whatever the chunking.
    """
    nz, ny, nx = (a.shape[0] // fz) * fz, (a.shape[1] // fy) * fy, (a.shape[2] // fx) * fx
    oz, oy, ox = nz // fz, ny // fy, nx // fx
    low = np.empty((oz, oy, ox), dtype=np.float32) if out is None else out
    step = max(1, (1 << 20) // max(1, fz * ny * nx))
    n_rows = min(step, max(oz, 1)) * oy * nx
    if work is not None and work.dtype == np.float32 and work.size >= n_rows:
        rows = work.reshape(-1)[:n_rows].reshape(-1, oy, nx)
    else:
        rows = np.empty((min(step, max(oz, 1)), oy, nx), dtype=np.float32)
    scale = np.float32(1.0 / (fz * fy * fx))
    for k in range(0, oz, step):
        m = min(step, oz - k)
        slab = a[k * fz : (k + m) * fz, :ny, :nx]
        sl = slab if fz == 1 else slab.reshape(m, fz, ny, nx).sum(axis=1, dtype=np.float32)
        r = rows[:m]
        if fy > 1:
            np.add.reduce(sl.reshape(m, oy, fy, nx), axis=2, out=r)
        else:
            np.copyto(r, sl)
        o = low[k : k + m]
        np.copyto(o, r[:, :, 0::fx][:, :, :ox])
        for a2 in range(1, fx):
            o += r[:, :, a2::fx][:, :, :ox]
        o *= scale
    return low


def read_header(
    path: str | os.PathLike[str], opener: Opener | None = None, *, keep: dict[str, Payload] | None = None,
    arena: Arena | None = None,
) -> SliceHeader:
    """Read the header of one DICOM file (only the tags volume building and series selection need).

    ``keep`` (internal): a dict that receives the file's bytes for a later pixel pass, so that each file
    is read once. ``arena`` (internal): local files are read into it (see
    :class:`~tasks.dicom.slice_reader.Arena`) instead of one ``bytes`` each.

    Raises
    ------
    ValueError
        When the file is not DICOM or cannot be parsed; the message names the file.
    """
    p = str(path)
    try:
        buf = arena.read(p) if arena is not None and opener is None else read_bytes(p, opener)
        v, payload = parse(p, buf)
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError, KeyError,
            Truncated, struct.error, UnicodeDecodeError) as e:
        raise ValueError(f"{p}: not a readable DICOM file ({type(e).__name__}: {e})") from e
    if keep is not None:
        keep[p] = payload
    pos = v.nums("ImagePositionPatient", 3)
    ps = v.nums("PixelSpacing", 2)
    agent = v.text("ContrastBolusAgent")
    return SliceHeader(
        path=p,
        series_instance_uid=v.text("SeriesInstanceUID"),
        study_instance_uid=v.text("StudyInstanceUID"),
        sop_instance_uid=v.text("SOPInstanceUID"),
        modality=v.text("Modality"),
        image_type=v.texts("ImageType"),
        rows=int(v.num("Rows") or 0),
        columns=int(v.num("Columns") or 0),
        position=(pos[0], pos[1], pos[2]) if pos else None,
        orientation=v.nums("ImageOrientationPatient", 6),
        pixel_spacing=(ps[0], ps[1]) if ps else None,
        slice_thickness=v.num("SliceThickness"),
        kvp=v.num("KVP"),
        contrast_agent=agent or None,
        gantry_tilt_deg=v.num("GantryDetectorTilt") or 0.0,
        manufacturer=v.text("Manufacturer"),
        kernel=v.text("ConvolutionKernel"),
        series_description=v.text("SeriesDescription"),
        number_of_frames=int(v.num("NumberOfFrames") or 1),
    )


def list_files(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[str]:
    """Expand a folder (recursively) or an iterable of files/folders into a sorted list of file paths."""
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    out: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(str(f) for f in sorted(p.rglob("*")) if f.is_file() and not f.name.startswith("."))
        else:
            out.append(str(item))
    return out


def read_headers(
    paths: Sequence[str], opener: Opener | None = None, *, keep: dict[str, Payload] | None = None
) -> tuple[list[SliceHeader], list[tuple[str, str]]]:
    """Headers of every readable DICOM file and ``(path, reason)`` for the others.

    ``keep`` (internal): receives the files' bytes (up to 2 GiB in all) for the pixel pass.
    """
    good: list[SliceHeader] = []
    bad: list[tuple[str, str]] = []
    kept = 0
    arena = Arena() if keep is not None and opener is None else None
    for p in paths:
        mine: dict[str, Payload] | None = {} if keep is not None and kept <= _PAYLOAD_BUDGET else None
        try:
            good.append(read_header(p, opener, keep=mine, arena=arena if mine is not None else None))
        except ValueError as e:
            bad.append((p, str(e)))
            continue
        if keep is not None and mine:
            kept += len(mine[p].buf)
            keep.update(mine)
    return good, bad


def group_series(headers: Iterable[SliceHeader]) -> dict[str, list[SliceHeader]]:
    """Headers grouped by SeriesInstanceUID (an empty UID is grouped as ``''``)."""
    out: dict[str, list[SliceHeader]] = {}
    for h in headers:
        out.setdefault(h.series_instance_uid, []).append(h)
    return out


def _normal(orient: tuple[float, ...]) -> np.ndarray:
    r = np.asarray(orient[:3])
    c = np.asarray(orient[3:6])
    n = np.cross(r, c)
    return np.asarray(n / (np.linalg.norm(n) or 1.0))


def axial_score(headers: Sequence[SliceHeader]) -> tuple[int, float, int]:
    """Sort key for choosing a series: (usable, -slice spacing, number of slices); higher is better.

    Usable means CT, not a localizer, axial orientation and at least 3 slices with positions.
    """
    ok = [h for h in headers if h.modality == "CT" and not h.is_localizer and h.position and h.orientation]
    if len(ok) < 3 or ok[0].orientation is None:
        return (0, 0.0, len(ok))
    n = _normal(ok[0].orientation)
    if abs(n[2]) < 0.8:
        return (0, 0.0, len(ok))
    z = np.sort([float(np.dot(n, h.position or (0, 0, 0))) for h in ok])
    dz = np.diff(z)
    dz = dz[dz > 1e-3]
    spacing = float(np.median(dz)) if len(dz) else 99.0
    return (1, -round(spacing, 2), len(ok))


def build_volume(
    headers: Sequence[SliceHeader],
    opener: Opener | None = None,
    *,
    spacing_tolerance: float = 0.1,
    _payloads: dict[str, Payload] | None = None,
) -> Volume:
    """Read the pixel data of one series' slices and assemble a canonical HU volume.

    Parameters
    ----------
    headers : headers of one series (from :func:`read_headers`); localizers and slices with another
        orientation or size are dropped and flagged.
    opener : optional callable opening a path for binary reading.
    spacing_tolerance : relative deviation of a slice gap from the median that counts as mixed spacing.
    _payloads : internal; file bytes kept by :func:`read_headers` (``keep=``), popped as they are used, so
        that each file is read once. Without it each slice file is read here.

    Raises
    ------
    ValueError
        When no slice has position, orientation and pixel spacing, or no slice can be decoded.

    Notes
    -----
    Gantry tilt is flagged, not corrected: the array keeps the acquired (sheared) grid. In-plane
    position differences between slices are ignored; z of each slice is exact.
    """
    flags: list[str] = []
    hs = [h for h in headers if h.position and h.orientation and h.pixel_spacing and h.number_of_frames == 1]
    uid = headers[0].series_instance_uid if headers else ""
    if not hs:
        raise ValueError(
            f"series {uid!r}: no single-frame slice has ImagePositionPatient, ImageOrientationPatient "
            "and PixelSpacing; cannot build a volume"
        )
    non_loc = [h for h in hs if not h.is_localizer]
    if len(non_loc) < len(hs):
        flags.append(VolumeFlag.LOCALIZER_EXCLUDED.value)
    hs = non_loc or hs
    # Majority orientation and size.
    keyf = lambda h: (tuple(round(v, 3) for v in h.orientation or ()), h.rows, h.columns)  # noqa: E731
    keys = [keyf(h) for h in hs]
    counts: dict[Any, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    major = max(counts, key=lambda k: counts[k])
    if len(counts) > 1:
        flags.append(VolumeFlag.LOCALIZER_EXCLUDED.value)
    hs = [h for h, key in zip(hs, keys, strict=True) if key == major]
    orient = hs[0].orientation or (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    n = _normal(orient)
    if abs(n[2]) < 0.8:
        flags.append(VolumeFlag.NON_AXIAL.value)
    dist = np.array([float(np.dot(n, h.position or (0, 0, 0))) for h in hs])
    order = np.argsort(dist, kind="stable")
    hs = [hs[i] for i in order]
    dist = dist[order]
    keep = np.concatenate([[True], np.diff(dist) > 1e-3])
    if not keep.all():
        flags.append(VolumeFlag.DUPLICATE_SLICES.value)
        hs = [h for h, k in zip(hs, keep, strict=True) if k]
        dist = dist[keep]
    pos = np.array([h.position for h in hs], dtype=float)
    # Gantry tilt: declared, or the slice positions do not move along the normal.
    tilt = any(abs(h.gantry_tilt_deg) > 0.1 for h in hs)
    if len(hs) > 1:
        steps = np.diff(pos, axis=0)
        along = steps @ n
        off = np.linalg.norm(steps - np.outer(along, n), axis=1)
        if np.median(off) > 0.02 * max(float(np.median(np.abs(along))), 1e-3) + 0.01:
            tilt = True
    if tilt:
        flags.append(VolumeFlag.GANTRY_TILT.value)
    if len(hs) > 1:
        gaps = np.diff(dist)
        med = float(np.median(gaps))
        if np.any(gaps > 1.5 * med):
            flags.append(VolumeFlag.MISSING_SLICES.value)
        regular = gaps[gaps <= 1.5 * med]
        if np.any(np.abs(regular - med) > spacing_tolerance * med):
            flags.append(VolumeFlag.MIXED_SPACING.value)
        dz = med
    else:
        flags.append(VolumeFlag.SINGLE_SLICE.value)
        dz = hs[0].slice_thickness or 1.0
    if 1 < len(hs) < 10:
        flags.append(VolumeFlag.FEW_SLICES.value)
    th = hs[0].slice_thickness
    if th and len(hs) > 1 and abs(th - dz) > 0.25 * dz:
        flags.append(VolumeFlag.THICKNESS_SPACING_MISMATCH.value)

    # Canonical order and in-plane flips are applied while each slice is written (no copy of the volume).
    pos_all = np.array([h.position for h in hs], dtype=float)
    r = np.asarray(orient[:3])
    c = np.asarray(orient[3:6])
    rev = len(hs) > 1 and pos_all[-1, 2] < pos_all[0, 2]
    if rev:
        hs = hs[::-1]
    flip_x, flip_y = bool(r[0] < 0), bool(c[1] < 0)
    if rev or flip_x or flip_y:
        flags.append(VolumeFlag.REORIENTED.value)
    rows, cols = hs[0].rows, hs[0].columns
    arr = np.empty((len(hs), rows, cols), dtype=np.float32)
    plane = np.empty((rows, cols), dtype=np.float32) if (flip_x or flip_y) else None
    scratch = np.empty((rows, cols), dtype=np.int16)  # integer clipping in decode_into (dtype adapts)
    ok = np.zeros(len(hs), dtype=bool)
    # The ~2 mm working grid of the spine finder, summed slab by slab while each slab is still in cache.
    ps0 = hs[0].pixel_spacing or (1.0, 1.0)
    gf = grid_factors((len(hs), rows, cols), (abs(dz), float(ps0[0]), float(ps0[1])))
    low = np.zeros(((len(hs) // gf[0]), rows // gf[1], cols // gf[2]), dtype=np.float32)
    work = np.empty((rows // gf[1]) * cols, dtype=np.float32)  # block_mean's row sums, reused per slice
    for k, h in enumerate(hs):
        try:
            payload = _payloads.pop(h.path, None) if _payloads is not None else None
            if payload is None:
                payload = parse(h.path, read_bytes(h.path, opener))[1]
            if plane is None:
                decode_into(h.path, h.rows, h.columns, payload, arr[k], scratch)
            else:
                decode_into(h.path, h.rows, h.columns, payload, plane, scratch)
                arr[k] = plane[::-1 if flip_y else 1, ::-1 if flip_x else 1]
            ok[k] = True
        except Exception:  # noqa: BLE001 - any decoder failure is recorded as a flag, the slice skipped
            continue
        if k // gf[0] < low.shape[0] and low.size:
            if gf[0] == 1:
                block_mean(arr[k : k + 1], 1, gf[1], gf[2], out=low[k : k + 1], work=work)
            else:
                low[k // gf[0]] += block_mean(arr[k : k + 1], 1, gf[1], gf[2], work=work)[0]
    if not ok.any():
        raise ValueError(f"series {uid!r}: none of {len(hs)} slices could be decoded")
    used = [h for h, g in zip(hs, ok, strict=True) if g]
    if not ok.all():
        flags.append(VolumeFlag.UNREADABLE_SLICES.value)
        arr = arr[ok]
    pos = np.array([h.position for h in used], dtype=float)
    zs = pos[:, 2].copy()
    ps = used[0].pixel_spacing or (1.0, 1.0)
    dy, dx = float(ps[0]), float(ps[1])
    origin = [float(pos[0, 0]), float(pos[0, 1]), float(pos[0, 2])]
    if flip_x:  # columns ran right-to-left in the patient: now left-increasing
        origin[0] = origin[0] - (cols - 1) * dx
    if flip_y:
        origin[1] = origin[1] - (rows - 1) * dy
    agent = used[0].contrast_agent
    vol = Volume(
        hu=np.ascontiguousarray(arr),
        spacing_mm=(float(abs(dz)), dy, dx),
        origin_mm=(origin[0], origin[1], origin[2]),
        slice_z_mm=zs,
        series_instance_uid=uid,
        study_instance_uid=used[0].study_instance_uid,
        kvp=used[0].kvp,
        contrast_agent=agent,
        manufacturer=used[0].manufacturer,
        kernel=used[0].kernel,
        slice_thickness_mm=used[0].slice_thickness,
        flags=list(dict.fromkeys(flags)),
        paths=[h.path for h in used],
    )
    if ok.all() and low.size and grid_factors(vol.shape, vol.spacing_mm) == gf:
        if gf[0] > 1:
            low *= np.float32(1.0 / gf[0])
        vol.__dict__["_block_means"] = {gf: low}
    return vol


def load_best_ct_volume(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], opener: Opener | None = None
) -> tuple[Volume, dict[str, Any]]:
    """Pick the best axial CT series among ``paths`` (thinnest complete axial, non-localizer) and build it.

    Returns the volume and a selection record (``series_instance_uid``, ``candidates``, ``skipped_files``).

    Raises
    ------
    NoCTSeries
        When the files are DICOM but none is CT (a ``ValueError``).
    ValueError
        When no file is DICOM or no series is an axial CT with at least one positioned slice.
    """
    files = list_files(paths)
    if not files:
        raise ValueError(f"paths {paths!r}: no files found")
    payloads: dict[str, Payload] = {}
    headers, bad = read_headers(files, opener, keep=payloads)
    if not headers:
        raise ValueError(f"paths {paths!r}: none of {len(files)} files is readable DICOM ({bad[0][1]})")
    groups = group_series(headers)
    ct = {u: hs for u, hs in groups.items() if any(h.modality == "CT" for h in hs)}
    if not ct:
        mods = sorted({h.modality for h in headers})
        raise NoCTSeries(f"paths {paths!r}: no CT series (modalities found: {', '.join(mods) or 'none'})")
    ranked = sorted(ct.items(), key=lambda kv: axial_score(kv[1]), reverse=True)
    uid, hs = ranked[0]
    usable = [h for h in hs if h.modality == "CT" and h.position]  # build_volume drops and flags localizers
    if not usable:
        usable = [h for h in hs if h.modality == "CT"]
    vol = build_volume(usable, opener, _payloads=payloads)
    payloads.clear()
    selection = {
        "series_instance_uid": uid,
        "candidates": [
            {"series_instance_uid": u, "n_files": len(h), "score": list(axial_score(h))} for u, h in ranked
        ],
        "skipped_files": len(bad),
    }
    return vol, selection
