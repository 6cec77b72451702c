"""Build a CT volume in Hounsfield units from the files of one or more series.

Two passes: headers first (no pixel data), then pixel data only for the slices of the chosen series.
Slices are ordered by their position along the slice normal and the array is put in a canonical
orientation: axis 0 runs from feet to head (patient z increasing), axis 1 from anterior to posterior,
axis 2 from the patient's right to left (DICOM LPS). Irregularities (gantry tilt, missing slices, mixed
spacing, localizers, duplicates) are flagged on the volume rather than raised.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

Opener = Callable[[str], IO[bytes]]
"""Opens a path or URL for binary reading (e.g. ``fsspec.open(...).open``); default: the local file."""


class VolumeFlag(enum.Enum):
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

    @classmethod
    def _missing_(cls, value: object) -> VolumeFlag | None:
        if isinstance(value, str):
            for m in cls:
                if m.value == value.lower():
                    return m
        return None


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


_CACHE: dict[str, Dataset] = {}  # header datasets of the current load, by path (pixel data deferred)


def _float(ds: Dataset, key: str) -> float | None:
    v = ds.get(key)
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _floats(ds: Dataset, key: str, n: int) -> tuple[float, ...] | None:
    v = ds.get(key)
    if v is None or v == "":
        return None
    try:
        out = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _open(path: str, opener: Opener | None) -> Any:
    return opener(path) if opener is not None else path


def read_header(path: str | os.PathLike[str], opener: Opener | None = None) -> SliceHeader:
    """Read the header of one DICOM file without its pixel data.

    Raises
    ------
    ValueError
        When the file is not DICOM or cannot be parsed; the message names the file.
    """
    p = str(path)
    try:
        if opener is None:
            # Pixel data is deferred (read from the file only if accessed), so this one parse also
            # serves the pixel pass of the chosen series.
            ds = pydicom.dcmread(p, defer_size="64 KB", force=False)
            _CACHE[p] = ds
        else:
            ds = pydicom.dcmread(_open(p, opener), stop_before_pixels=True, force=False)
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError, KeyError) as e:
        raise ValueError(f"{p}: not a readable DICOM file ({type(e).__name__}: {e})") from e
    orient = _floats(ds, "ImageOrientationPatient", 6)
    ps = _floats(ds, "PixelSpacing", 2)
    pos = _floats(ds, "ImagePositionPatient", 3)
    return SliceHeader(
        path=p,
        series_instance_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        study_instance_uid=str(ds.get("StudyInstanceUID", "") or ""),
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
        modality=str(ds.get("Modality", "") or ""),
        image_type=tuple(str(t) for t in (ds.get("ImageType") or ())),
        rows=int(ds.get("Rows", 0) or 0),
        columns=int(ds.get("Columns", 0) or 0),
        position=(pos[0], pos[1], pos[2]) if pos else None,
        orientation=orient,
        pixel_spacing=(ps[0], ps[1]) if ps else None,
        slice_thickness=_float(ds, "SliceThickness"),
        kvp=_float(ds, "KVP"),
        contrast_agent=(str(ds.get("ContrastBolusAgent")) if ds.get("ContrastBolusAgent") else None),
        gantry_tilt_deg=_float(ds, "GantryDetectorTilt") or 0.0,
        manufacturer=str(ds.get("Manufacturer", "") or ""),
        kernel=str(ds.get("ConvolutionKernel", "") or ""),
        series_description=str(ds.get("SeriesDescription", "") or ""),
        number_of_frames=int(ds.get("NumberOfFrames", 1) or 1),
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
    paths: Sequence[str], opener: Opener | None = None
) -> tuple[list[SliceHeader], list[tuple[str, str]]]:
    """Headers of every readable DICOM file and ``(path, reason)`` for the others."""
    good: list[SliceHeader] = []
    bad: list[tuple[str, str]] = []
    for p in paths:
        try:
            good.append(read_header(p, opener))
        except ValueError as e:
            bad.append((p, str(e)))
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


def _decode(ds: Dataset) -> np.ndarray:
    """Pixel array of one single-frame slice; fast path for native little-endian data."""
    ts = ds.file_meta.TransferSyntaxUID if "TransferSyntaxUID" in ds.file_meta else None
    bits = int(ds.get("BitsAllocated", 16))
    if ts is not None and not ts.is_compressed and ts.is_little_endian and bits == 16 and "PixelData" in ds:
        dtype = np.int16 if int(ds.get("PixelRepresentation", 0)) == 1 else np.uint16
        n = int(ds.Rows) * int(ds.Columns)
        arr = np.frombuffer(ds.PixelData, dtype=dtype, count=n)
        return arr.reshape(int(ds.Rows), int(ds.Columns))
    return np.asarray(ds.pixel_array)


def build_volume(
    headers: Sequence[SliceHeader],
    opener: Opener | None = None,
    *,
    spacing_tolerance: float = 0.1,
) -> Volume:
    """Read the pixel data of one series' slices and assemble a canonical HU volume.

    Parameters
    ----------
    headers : headers of one series (from :func:`read_headers`); localizers and slices with another
        orientation or size are dropped and flagged.
    opener : optional callable opening a path for binary reading.
    spacing_tolerance : relative deviation of a slice gap from the median that counts as mixed spacing.

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
    counts: dict[Any, int] = {}
    for h in hs:
        counts[keyf(h)] = counts.get(keyf(h), 0) + 1
    major = max(counts, key=lambda k: counts[k])
    if len(counts) > 1:
        flags.append(VolumeFlag.LOCALIZER_EXCLUDED.value)
    hs = [h for h in hs if keyf(h) == major]
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

    slices: list[np.ndarray] = []
    used: list[SliceHeader] = []
    bad = 0
    for h in hs:
        try:
            cached = _CACHE.pop(h.path, None) if opener is None else None
            ds = cached if cached is not None else pydicom.dcmread(_open(h.path, opener))
            raw = _decode(ds)
            slope = _float(ds, "RescaleSlope") or 1.0
            inter = _float(ds, "RescaleIntercept") or 0.0
        except Exception:  # noqa: BLE001 - any decoder failure is recorded as a flag, the slice skipped
            bad += 1
            continue
        hu = raw.astype(np.float32)
        if slope != 1.0:
            hu *= np.float32(slope)
        if inter != 0.0:
            hu += np.float32(inter)
        slices.append(hu)
        used.append(h)
    if not slices:
        raise ValueError(f"series {uid!r}: none of {len(hs)} slices could be decoded")
    if bad:
        flags.append(VolumeFlag.UNREADABLE_SLICES.value)
    arr = np.stack(slices)
    np.maximum(arr, -1024.0, out=arr)  # padding values (e.g. -2000 outside the field of view) -> air
    pos = np.array([h.position for h in used], dtype=float)
    zs = pos[:, 2].copy()
    ps = used[0].pixel_spacing or (1.0, 1.0)
    dy, dx = float(ps[0]), float(ps[1])
    origin = [float(pos[0, 0]), float(pos[0, 1]), float(pos[0, 2])]
    r = np.asarray(orient[:3])
    c = np.asarray(orient[3:6])
    if zs[-1] < zs[0]:
        arr = arr[::-1]
        zs = zs[::-1].copy()
        origin[2] = float(zs[0])
        flags.append(VolumeFlag.REORIENTED.value)
    if r[0] < 0:  # columns run right-to-left in the patient: flip to left-increasing
        arr = arr[:, :, ::-1]
        origin[0] = origin[0] - (arr.shape[2] - 1) * dx
        flags.append(VolumeFlag.REORIENTED.value)
    if c[1] < 0:
        arr = arr[:, ::-1, :]
        origin[1] = origin[1] - (arr.shape[1] - 1) * dy
        flags.append(VolumeFlag.REORIENTED.value)
    agent = used[0].contrast_agent
    return Volume(
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


def load_best_ct_volume(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], opener: Opener | None = None
) -> tuple[Volume, dict[str, Any]]:
    """Pick the best axial CT series among ``paths`` (thinnest complete axial, non-localizer) and build it.

    Returns the volume and a selection record (``series_instance_uid``, ``candidates``, ``skipped_files``).

    Raises
    ------
    ValueError
        When no file is DICOM or no series is an axial CT with at least one positioned slice.
    """
    files = list_files(paths)
    if not files:
        raise ValueError(f"paths {paths!r}: no files found")
    headers, bad = read_headers(files, opener)
    if not headers:
        raise ValueError(f"paths {paths!r}: none of {len(files)} files is readable DICOM ({bad[0][1]})")
    groups = group_series(headers)
    ct = {u: hs for u, hs in groups.items() if any(h.modality == "CT" for h in hs)}
    if not ct:
        mods = sorted({h.modality for h in headers})
        raise ValueError(f"paths {paths!r}: no CT series (modalities found: {', '.join(mods) or 'none'})")
    ranked = sorted(ct.items(), key=lambda kv: axial_score(kv[1]), reverse=True)
    uid, hs = ranked[0]
    usable = [h for h in hs if h.modality == "CT" and h.position]  # build_volume drops and flags localizers
    if not usable:
        usable = [h for h in hs if h.modality == "CT"]
    try:
        vol = build_volume(usable, opener)
    finally:
        for f in files:
            _CACHE.pop(f, None)
    selection = {
        "series_instance_uid": uid,
        "candidates": [
            {"series_instance_uid": u, "n_files": len(h), "score": list(axial_score(h))} for u, h in ranked
        ],
        "skipped_files": len(bad),
    }
    return vol, selection
