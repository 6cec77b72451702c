"""One pass over a DICOM file's bytes for volume building: the header tags needed, then the pixels.

The fast header reader (:func:`tasks.dicom.fastheader.read_fast`) parses the bytes; native little-endian
16-bit pixel data is taken from the same bytes with ``numpy.frombuffer``. Compressed syntaxes (through
pylibjpeg) and anything the fast reader declines go through pydicom. Used by :mod:`tasks.dicom.volume`.
"""

from __future__ import annotations

import functools
import io
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from tasks.dicom.elements import decode_numbers, decode_strings
from tasks.dicom.fastheader import FastPathUnsupported, read_fast

Opener = Callable[[str], IO[bytes]]


@dataclass
class Payload:
    """What the pixel pass needs of one file read by :func:`read_headers` (kept only for the load)."""

    buf: bytes | memoryview
    pixel_pos: int  # offset of the PixelData element, -1 when the fast path does not apply
    implicit: bool
    slope: float
    intercept: float
    signed: bool
    bits: int
    samples: int


_PIXEL_DATA = 0x7FE00010
_PIXEL_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian
_HEAD = 16 * 1024  # header prefix tried first when a file was read into an arena
_ARENA_BLOCK = 64 * 1024**2
_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
# Tags read here (group, element) -> decoded lazily from the fast reader's raw elements.
_T = {
    "SeriesInstanceUID": 0x0020000E, "StudyInstanceUID": 0x0020000D, "SOPInstanceUID": 0x00080018,
    "Modality": 0x00080060, "ImageType": 0x00080008, "Rows": 0x00280010, "Columns": 0x00280011,
    "ImagePositionPatient": 0x00200032, "ImageOrientationPatient": 0x00200037, "PixelSpacing": 0x00280030,
    "SliceThickness": 0x00180050, "KVP": 0x00180060, "ContrastBolusAgent": 0x00180010,
    "GantryDetectorTilt": 0x00181120, "Manufacturer": 0x00080070, "ConvolutionKernel": 0x00181210,
    "SeriesDescription": 0x0008103E, "NumberOfFrames": 0x00280008, "RescaleSlope": 0x00281053,
    "RescaleIntercept": 0x00281052, "BitsAllocated": 0x00280100, "PixelRepresentation": 0x00280103,
    "SamplesPerPixel": 0x00280002,
}


@functools.lru_cache(maxsize=8192)
def _strings(vr: str, raw: bytes, encoding: str) -> tuple[str, ...]:
    return tuple(decode_strings(vr, raw, encoding))


@functools.lru_cache(maxsize=8192)
def _numbers(vr: str, raw: bytes) -> tuple[float, ...]:
    return tuple(decode_numbers(vr, raw))


class FastView:
    """``get``-style access to the needed tags of a :class:`~tasks.dicom.fastheader.FastHeader`.

    Values are decoded as :meth:`FastHeader.strings <tasks.dicom.fastheader.FastHeader.strings>` and
    ``numbers`` do, memoised on the element's bytes: most tags repeat byte for byte across a series.
    """

    def __init__(self, fh: Any) -> None:
        self.fh = fh

    def text(self, key: str) -> str:
        return "\\".join(self.texts(key))

    def texts(self, key: str) -> tuple[str, ...]:
        e = self.fh.elements.get(_T[key])
        if e is None:
            return ()
        try:
            if type(e[1]) is bytes:
                return _strings(e[0], e[1], self.fh.encoding)
            return tuple(decode_strings(e[0], e[1], self.fh.encoding))
        except (FastPathUnsupported, UnicodeDecodeError):  # not a string VR (e.g. UN), or undecodable
            return ()

    def nums(self, key: str, n: int) -> tuple[float, ...] | None:
        e = self.fh.elements.get(_T[key])
        if e is None:
            return None
        try:
            vals = _numbers(e[0], e[1]) if type(e[1]) is bytes else tuple(decode_numbers(e[0], e[1]))
        except (ValueError, FastPathUnsupported):
            return None
        return vals if vals and len(vals) == n else None

    def num(self, key: str) -> float | None:
        v = self.nums(key, 1)
        return v[0] if v else None


class DatasetView(FastView):
    """The same access over a pydicom dataset (the fallback path)."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def text(self, key: str) -> str:
        v = self.ds.get(key)
        if v is None or v == "":
            return ""
        if isinstance(v, str | int | float):
            return str(v)
        return "\\".join(str(x) for x in v)

    def texts(self, key: str) -> tuple[str, ...]:
        v = self.ds.get(key)
        if v is None or v == "":
            return ()
        return (str(v),) if isinstance(v, str) else tuple(str(x) for x in v)

    def nums(self, key: str, n: int) -> tuple[float, ...] | None:
        v = self.ds.get(key)
        if v is None or v == "":
            return None
        try:
            out = tuple(float(x) for x in v) if n > 1 or not isinstance(v, str | int | float) else (float(v),)
        except (TypeError, ValueError):
            return None
        return out if len(out) == n else None


def read_bytes(path: str, opener: Opener | None) -> bytes:
    if opener is None:
        with open(path, "rb") as fh:
            return fh.read()
    f = opener(path)
    try:
        return bytes(f.read())
    finally:
        f.close()


class Arena:
    """Files read back to back into large preallocated blocks (``read`` returns a view of the block).

    One numpy block of 64 MiB holds ~120 slices of 512 x 512: the kernel backs it with a few huge pages,
    whereas a fresh ``bytes`` of 0.5 MiB per file is mapped (and page-faulted, then unmapped) each time,
    which costs about as much CPU as the read itself.
    """

    def __init__(self, block: int = _ARENA_BLOCK) -> None:
        self.block = block
        self.buf = np.empty(0, dtype=np.uint8)
        self.used = 0

    def read(self, path: str) -> memoryview:
        """The bytes of the local file ``path``, as a read-only view into the arena."""
        with open(path, "rb", buffering=0) as fh:
            size = os.fstat(fh.fileno()).st_size
            if self.used + size > self.buf.size:
                self.buf = np.empty(max(self.block, size), dtype=np.uint8)
                self.used = 0
            mv = self.buf.data[self.used : self.used + size]
            got = 0
            while got < size:
                n = fh.readinto(mv[got:])
                if not n:
                    break
                got += n
        self.used += got
        return mv[:got].toreadonly()


def _fast_header(buf: bytes | memoryview) -> Any:
    """:func:`read_fast` of ``buf``; for a view (an :class:`Arena` file) first on the bytes up to the last
    (7FE0,0010) tag of the first 16 KiB, accepted only when the element walk ends exactly there (so that
    tag is the top-level pixel data), else on a copy of the whole file."""
    if isinstance(buf, bytes):
        return read_fast(buf)
    head = bytes(buf[:_HEAD])
    cut = head.rfind(_PIXEL_TAG)
    if cut > 132:
        try:
            fh = read_fast(head[:cut])
        except Exception:  # noqa: BLE001 - whatever fails on the prefix is decided on the whole file
            fh = None
        if fh is not None and fh.pixel_pos == cut:
            return fh
    return read_fast(bytes(buf))


def parse(p: str, buf: bytes | memoryview) -> tuple[FastView, Payload]:
    """Header view and pixel payload of one file: the fast reader first, pydicom when it declines."""
    view: FastView
    try:
        fh = _fast_header(buf)
        view = FastView(fh)
        ts, pos, implicit = fh.transfer_syntax, fh.pixel_pos, fh.implicit
    except FastPathUnsupported:
        ds = pydicom.dcmread(io.BytesIO(buf), stop_before_pixels=True, force=False)
        view = DatasetView(ds)
        ts, pos, implicit = "", -1, False
    native = ts in _UNCOMPRESSED and pos + 8 <= len(buf) and struct.unpack_from("<I", buf, pos)[0] == (
        _PIXEL_DATA >> 16 | (_PIXEL_DATA & 0xFFFF) << 16)
    payload = Payload(
        buf=buf, pixel_pos=pos if native else -1, implicit=implicit,
        slope=view.num("RescaleSlope") or 1.0, intercept=view.num("RescaleIntercept") or 0.0,
        signed=int(view.num("PixelRepresentation") or 0) == 1, bits=int(view.num("BitsAllocated") or 16),
        samples=int(view.num("SamplesPerPixel") or 1),
    )
    return view, payload


_FLOOR_PLANES: dict[tuple[tuple[int, ...], str, float], np.ndarray] = {}


def _floor_plane(shape: tuple[int, ...], dtype: np.dtype | type, floor: float) -> np.ndarray:
    """A read-only array of ``shape`` filled with ``floor`` (cached; a few entries per process)."""
    key = (tuple(shape), np.dtype(dtype).str, float(floor))
    plane = _FLOOR_PLANES.get(key)
    if plane is None:
        if len(_FLOOR_PLANES) >= 8:
            _FLOOR_PLANES.clear()
        plane = np.full(shape, floor, dtype=dtype)
        plane.flags.writeable = False
        _FLOOR_PLANES[key] = plane
    return plane


def decode_into(path: str, rows: int, columns: int, payload: Payload, out: np.ndarray,
                scratch: np.ndarray | None = None) -> None:
    """Write the HU of one single-frame slice into ``out`` (rows x columns float32), padding clipped to -1024 HU.

    Native little-endian 16-bit data is read from the file bytes with ``numpy.frombuffer``; anything else
    (compressed syntaxes through pylibjpeg, 8/32-bit, big endian) goes through pydicom's ``pixel_array``.
    With slope 1 and a whole-number intercept (nearly every CT) the clip to -1024 HU and the intercept are
    applied to the stored integers (into ``scratch``, a rows x columns array of the stored dtype, allocated
    when not given) before the one conversion to float32; the values are identical to clipping the float
    HU. The clip compares against a whole array of the floor value (:func:`_floor_plane`): numpy's
    ``maximum`` against a scalar takes several times longer than against an array.
    """
    n = rows * columns
    pos = payload.pixel_pos
    raw: np.ndarray | None = None
    if pos >= 0 and payload.bits == 16 and payload.samples == 1:
        buf = payload.buf
        if payload.implicit:
            (length,) = struct.unpack_from("<I", buf, pos + 4)
            start = pos + 8
        else:
            (length,) = struct.unpack_from("<I", buf, pos + 8)
            start = pos + 12
        if length >= 2 * n and start + 2 * n <= len(buf):
            dtype = np.int16 if payload.signed else np.uint16
            raw = np.frombuffer(buf, dtype=dtype, count=n, offset=start).reshape(rows, columns)
    if raw is None:
        ds = pydicom.dcmread(io.BytesIO(payload.buf), force=False)
        raw = np.asarray(ds.pixel_array)
        if raw.shape != out.shape:
            raise ValueError(f"{path}: pixel array {raw.shape} is not {out.shape}")
    slope, intercept = payload.slope, payload.intercept
    if slope == 1.0 and float(intercept).is_integer() and raw.dtype in (np.int16, np.uint16):
        # Stored values below -1024 - intercept become air; HU = stored + intercept is exact in float32.
        info = np.iinfo(raw.dtype)
        floor = -1024 - int(intercept)
        if floor > info.max:
            out.fill(np.float32(-1024.0))
            return
        if scratch is None or scratch.shape != raw.shape or scratch.dtype != raw.dtype:
            scratch = np.empty(raw.shape, dtype=raw.dtype)
        src = raw
        if floor > info.min and int(raw.min()) < floor:
            np.maximum(raw, _floor_plane(raw.shape, raw.dtype, floor), out=scratch)
            src = scratch
        if raw.dtype == np.int16 and -32768 <= intercept <= 0:
            # Stored values >= floor plus a non-positive intercept stay within int16 (>= -1024 HU).
            np.add(src, np.int16(intercept), out=scratch)
            np.copyto(out, scratch, casting="unsafe")
            return
        np.copyto(out, src, casting="unsafe")
        if intercept != 0.0:
            out += np.float32(intercept)
        return
    if slope != 1.0:
        np.multiply(raw, np.float32(slope), out=out, dtype=np.float32)
        out += np.float32(intercept)
    else:
        np.add(raw, np.float32(intercept), out=out, dtype=np.float32)
    # Padding (e.g. -2000 outside the field of view) -> air; the stored minimum says whether any pixel is
    # below -1024 HU (a cheap integer pass instead of a float one).
    lo = float(raw.min()) * slope + intercept
    if lo < -1024.0:
        np.maximum(out, _floor_plane(out.shape, np.float32, -1024.0), out=out)
