"""The element walk of the fast DICOM header reader: little-endian data elements from one ``bytes`` buffer.

:func:`parse_elements` reads explicit or implicit VR little endian elements, sequences and items
up to the pixel data, keeping raw values; :func:`decode_strings` and :func:`decode_numbers` decode them with
pydicom 3's rules; :func:`check_pixel_data` checks that the pixel data element is complete. What the walk
does not handle raises :class:`FastPathUnsupported` (the caller falls back to pydicom). The series layouts
that let most files skip the walk live in :mod:`tasks.dicom.fastheader`.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from functools import lru_cache
from itertools import accumulate
from typing import Any

from pydicom._dicom_dict import DicomDictionary
from pydicom.datadict import dictionary_VR

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"

PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF

LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
SHORT_VRS = frozenset(
    {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "PN", "SH", "SL", "SS", "ST",
     "TM", "UI", "UL", "US"}
)
LONG_VR_BYTES = {v.encode(): v for v in LONG_VRS}
SHORT_VR_BYTES = {v.encode(): v for v in SHORT_VRS}
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
TEXT_VRS = frozenset({"SH", "LO", "UC"})  # split, then strip each value (pydicom convert_text)
SINGLE_VRS = frozenset({"ST", "LT", "UT"})  # one value, backslash is text
NUMERIC_FMT = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
NUMERIC_SIZE = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "SV": 8, "UV": 8, "AT": 4}
CHARSETS = {"": "latin_1", "ISO_IR 6": "latin_1", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}

U16X2 = struct.Struct("<HH")
_EXPL = struct.Struct("<HHHH")
U32 = struct.Struct("<I")
U16 = struct.Struct("<H")
_IMPL = struct.Struct("<HHI")

Elements = dict[int, tuple[str, Any]]
"""tag -> (VR, value): ``bytes`` for ordinary elements, ``list[Elements]`` (items) for ``SQ``."""


class FastPathUnsupported(Exception):
    """The file uses something the fast reader does not handle; use pydicom instead."""


class Truncated(Exception):
    """The file ends inside an element (header or pixel data)."""


@lru_cache(maxsize=4096)
def _implicit_vr(tag: int) -> str:
    entry = DicomDictionary.get(tag)
    if entry is not None:
        vr = entry[0]
    else:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return "UN"
    if vr == "US or SS":
        return vr  # resolved with PixelRepresentation when the JSON is built, as pydicom does
    return "UN" if " or " in vr or vr == "NONE" else vr


@lru_cache(maxsize=4096)
def _known_vr(tag: int) -> str | None:
    """Dictionary VR of a public tag stored as UN (pydicom's ``replace_un_with_known_vr``)."""
    if tag >> 16 & 1:
        return None
    vr = _implicit_vr(tag)
    return None if vr == "UN" else vr


class Items(list):  # type: ignore[type-arg]
    """The items of a sequence, plus the sequence's raw value bytes (a cache key for its JSON)."""

    __slots__ = ("raw",)
    raw: bytes


_VR_INFO: dict[int, tuple[str, bool]] = {
    **{int.from_bytes(b, "little"): (v, False) for b, v in SHORT_VR_BYTES.items()},
    **{int.from_bytes(b, "little"): (v, True) for b, v in LONG_VR_BYTES.items()},
}


def parse_elements(
    buf: bytes, pos: int, end: int, implicit: bool, top: bool,
    ktags: list[int] | None = None, kwholes: list[bytes] | None = None,
) -> tuple[Elements, int]:
    """Parse elements in ``buf[pos:end]``; stops at an item delimiter (nested) or the pixel data (top).

    With ``ktags``/``kwholes``, the tag and the whole bytes (header and value) of each element are
    appended: the memo keys of its DICOM JSON text and promoted value, and the next file's template.
    """
    keys = kwholes is not None
    out: Elements = {}
    n = len(buf)
    vr_info = _VR_INFO
    expl = _EXPL.unpack_from
    u32 = U32.unpack_from
    while pos < end:
        start0 = pos
        if pos + 8 > n:
            raise Truncated(f"element header at byte {pos} runs past the end ({n} bytes)")
        if implicit:
            group, elem, length = _IMPL.unpack_from(buf, pos)
            tag = group << 16 | elem
            if group == 0xFFFE:
                if tag in (ITEM_END, SEQ_END):
                    return out, pos + 8
                raise FastPathUnsupported(f"unexpected item tag at byte {pos}")
            if top and tag in PIXEL_TAGS:
                return out, pos
            vr = _implicit_vr(tag) if group & 1 == 0 else "UN"
            pos += 8
        else:
            group, elem, vrb, length = expl(buf, pos)
            tag = group << 16 | elem
            if group >= 0x7FE0:
                if group == 0xFFFE:
                    if tag in (ITEM_END, SEQ_END):
                        return out, pos + 8
                    raise FastPathUnsupported(f"unexpected item tag at byte {pos}")
                if top and tag in PIXEL_TAGS:
                    return out, pos
            info = vr_info.get(vrb)
            if info is None:
                raise FastPathUnsupported(f"unknown VR {vrb.to_bytes(2, 'little')!r} at byte {pos}")
            vr, long = info
            if not long:  # the common case, kept short
                nxt = pos + 8 + length
                if nxt > n:
                    raise Truncated(f"element ({group:04X},{elem:04X}) needs {length} bytes at {pos + 8}, "
                                    f"file has {n}")
                out[tag] = (vr, buf[pos + 8 : nxt])
                if keys:
                    ktags.append(tag)  # type: ignore[union-attr]
                    kwholes.append(buf[pos:nxt])  # type: ignore[union-attr]
                pos = nxt
                continue
            if long:
                if pos + 12 > n:
                    raise Truncated(f"element header at byte {pos} runs past the end")
                (length,) = u32(buf, pos + 8)
                pos += 12
            else:
                pos += 8
            if vr == "UN":
                known = _known_vr(tag)
                if known == "SQ" or length == UNDEFINED:  # an explicit UN sequence: its items are implicit VR
                    out[tag], pos = _sequence(buf, pos, length, True)
                    if keys:
                        ktags.append(tag)  # type: ignore[union-attr]
                        kwholes.append(buf[start0:pos])  # type: ignore[union-attr]
                    continue
                if known is not None:
                    vr = known
        if vr == "SQ" or (length == UNDEFINED and vr == "UN"):
            out[tag], pos = _sequence(buf, pos, length, implicit)
            if keys:
                ktags.append(tag)  # type: ignore[union-attr]
                kwholes.append(buf[start0:pos])  # type: ignore[union-attr]
            continue
        if length == UNDEFINED:
            raise FastPathUnsupported(f"undefined length {vr} element ({tag:08X}) outside pixel data")
        nxt = pos + length
        if nxt > n:
            raise Truncated(f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) needs {length} bytes at {pos}, file has {n}")
        out[tag] = (vr, buf[pos:nxt])
        if keys:
            ktags.append(tag)  # type: ignore[union-attr]
            kwholes.append(buf[start0:nxt])  # type: ignore[union-attr]
        pos = nxt
    return out, pos


def _sequence(buf: bytes, pos: int, length: int, implicit: bool) -> tuple[tuple[str, Items], int]:
    """A sequence's value at ``pos`` (its items, with their raw bytes kept) and the position after it."""
    items, end = _parse_items(buf, pos, length, implicit)
    items.raw = buf[pos:end]
    return ("SQ", items), end


def _parse_items(buf: bytes, pos: int, length: int, implicit: bool) -> tuple[Items, int]:
    end = len(buf) if length == UNDEFINED else pos + length
    if length != UNDEFINED and end > len(buf):
        raise Truncated(f"sequence at byte {pos} needs {length} bytes")
    items = Items()
    while pos < end:
        if pos + 8 > len(buf):
            raise Truncated(f"item header at byte {pos} runs past the end")
        group, elem = U16X2.unpack_from(buf, pos)
        (ilen,) = U32.unpack_from(buf, pos + 4)
        tag = group << 16 | elem
        pos += 8
        if tag == SEQ_END:
            return items, pos
        if tag != ITEM:
            raise FastPathUnsupported(f"expected an item tag at byte {pos - 8}, found {tag:08X}")
        iend = len(buf) if ilen == UNDEFINED else pos + ilen
        if iend > len(buf):
            raise Truncated(f"item at byte {pos} needs {ilen} bytes")
        item, pos = parse_elements(buf, pos, iend, implicit, top=False)
        items.append(item)
    if length == UNDEFINED:
        raise Truncated("sequence without a delimiter at the end of the file")
    return items, pos


class Template:
    """The top-level layout of the previous file: the next file of a series mostly repeats it byte for byte."""

    __slots__ = ("buf", "data_start", "implicit", "tags", "wholes", "vals", "starts", "varying")

    def __init__(self, buf: bytes, data_start: int, implicit: bool, tags: list[int], wholes: list[bytes],
                 vals: list[tuple[str, Any]], varying: list[int] | None) -> None:
        self.buf = buf
        self.data_start = data_start
        self.implicit = implicit
        self.tags = tags
        self.wholes = wholes
        self.vals = vals
        self.starts = list(accumulate(map(len, wholes), initial=data_start))
        self.varying = varying  # indexes that differed from the file before; None: unknown


def parse_with_template(
    buf: bytes, pos: int, n: int, implicit: bool, tpl: Template
) -> tuple[Elements, int, list[int], list[bytes], list[tuple[str, Any]], list[int]]:
    """Top-level parse that copies runs of elements equal to the template's (one C-level comparison per
    run) and parses only the elements that differ.

    The result is the same as ``parse_elements``'s: a run is reused only when its bytes are identical at the
    current position, and identical bytes parse identically.
    """
    tags: list[int] = []
    wholes: list[bytes] = []
    vals: list[tuple[str, Any]] = []
    varying: list[int] = []
    tb, ts, count = tpl.buf, tpl.starts, len(tpl.tags)
    known = tpl.varying
    j = 0
    while True:
        if 0 <= j < count:
            if known is None:
                k = count
            else:
                i = bisect_left(known, j)
                k = known[i] if i < len(known) else count
            if k > j:
                if not buf.startswith(tb[ts[j] : ts[k]], pos):
                    lo, hi = j, k  # [j, lo) matches, [j, hi) does not
                    while hi - lo > 1:
                        mid = (lo + hi) // 2
                        if buf.startswith(tb[ts[j] : ts[mid]], pos):
                            lo = mid
                        else:
                            hi = mid
                    k = lo
                if k > j:
                    tags += tpl.tags[j:k]
                    wholes += tpl.wholes[j:k]
                    vals += tpl.vals[j:k]
                    pos += ts[k] - ts[j]
                    j = k
                    continue
        if pos >= n:
            return dict(zip(tags, vals, strict=True)), pos, tags, wholes, vals, varying
        # One element: the common short explicit VR inline, anything else through parse_elements.
        info = None
        if not implicit and pos + 8 <= n:
            group, elem, vrb, length = _EXPL.unpack_from(buf, pos)
            info = _VR_INFO.get(vrb) if group < 0x7FE0 else None
        if info is not None and not info[1] and pos + 8 + length <= n:
            tag = group << 16 | elem
            nxt = pos + 8 + length
            whole = buf[pos:nxt]
            val: tuple[str, Any] = (info[0], buf[pos + 8 : nxt])
        else:
            one_t: list[int] = []
            one_w: list[bytes] = []
            one, nxt = parse_elements(buf, pos, pos + 1, implicit, True, one_t, one_w)
            if not one_t:  # pixel data or the end of the file
                return dict(zip(tags, vals, strict=True)), nxt, tags, wholes, vals, varying
            tag, whole = one_t[0], one_w[0]
            val = one[tag]
        if not (0 <= j < count and tpl.tags[j] == tag and tpl.wholes[j] == whole):
            varying.append(len(tags))
        tags.append(tag)
        wholes.append(whole)
        vals.append(val)
        pos = nxt
        if 0 <= j < count and tpl.tags[j] == tag:
            j += 1
        else:  # the layouts diverge here: resynchronise on this tag, if the template has it
            try:
                j = tpl.tags.index(tag) + 1
            except ValueError:
                j = -1


def check_pixel_data(buf: bytes, pos: int, implicit: bool) -> None:
    """Raise :class:`Truncated` if the pixel data element starting at ``pos`` does not fit in ``buf``.

    Notes
    -----
    Only lengths are checked (element, encapsulated items); the compressed stream is not decoded.
    """
    n = len(buf)
    if pos >= n:
        return
    if pos + 8 > n:
        raise Truncated("file ends inside the pixel data element header")
    if implicit:
        (length,) = U32.unpack_from(buf, pos + 4)
        pos += 8
    else:
        vrb = buf[pos + 4 : pos + 6]
        if vrb in LONG_VR_BYTES:
            if pos + 12 > n:
                raise Truncated("file ends inside the pixel data element header")
            (length,) = U32.unpack_from(buf, pos + 8)
            pos += 12
        else:
            (length,) = struct.unpack_from("<H", buf, pos + 6)
            pos += 8
    if length != UNDEFINED:
        if pos + length > n:
            raise Truncated(f"pixel data needs {length} bytes at byte {pos}, file has {n}")
        return
    while True:  # encapsulated fragments
        if pos + 8 > n:
            raise Truncated("encapsulated pixel data ends without a sequence delimiter")
        group, elem = U16X2.unpack_from(buf, pos)
        (flen,) = U32.unpack_from(buf, pos + 4)
        tag = group << 16 | elem
        pos += 8
        if tag == SEQ_END:
            return
        if tag != ITEM or flen == UNDEFINED:
            raise Truncated(f"bad fragment tag {tag:08X} in encapsulated pixel data")
        pos += flen
        if pos > n:
            raise Truncated("encapsulated pixel data fragment runs past the end of the file")


def decode_strings(vr: str, raw: Any, encoding: str) -> list[str]:
    """Decode a string element like pydicom 3 (``pydicom.values.convert_*``); empty values dropped at ends."""
    if vr == "SQ" or not isinstance(raw, bytes | bytearray | memoryview):
        return []
    if not raw:
        return []
    if vr in TEXT_VRS:
        vals = [v.rstrip("\0 ") for v in bytes(raw).decode(encoding).split("\\")]
    elif vr in SINGLE_VRS:
        vals = [bytes(raw).decode(encoding).rstrip("\0 ")]
    elif vr == "AE":
        vals = [v.strip() for v in bytes(raw).decode("latin_1").split("\\")]
    elif vr in ("DS", "IS"):
        vals = bytes(raw).decode("latin_1").strip().rstrip(" \0").split("\\")
    elif vr == "UR":
        vals = [bytes(raw).decode("latin_1").rstrip()]
    elif vr in NUMERIC_FMT or vr in BINARY_VRS or vr == "AT":
        raise FastPathUnsupported(f"VR {vr} is not a string")
    else:  # AS CS DA DT TM UI PN
        vals = bytes(raw).decode(encoding if vr == "PN" else "latin_1").rstrip(" \0").split("\\")
    if len(vals) == 1 and vals[0] == "":
        return []
    return vals


def decode_numbers(vr: str, raw: Any) -> list[float]:
    """Decode DS/IS strings or binary numbers to floats (pydicom's ``DSfloat``/``IS`` values)."""
    if vr == "SQ" or not raw:
        return []
    if vr in ("DS", "IS"):
        parts = bytes(raw).decode("latin_1").strip().rstrip(" \0").split("\\")
        if len(parts) == 1 and parts[0] == "":
            return []
        return [float(p) for p in parts]
    fmt = NUMERIC_FMT.get(vr)
    if fmt is None:
        raise FastPathUnsupported(f"VR {vr} is not numeric")
    size = NUMERIC_SIZE[vr]
    count = len(raw) // size
    return [float(v) for v in struct.unpack_from(f"<{count}{fmt}", raw)]
