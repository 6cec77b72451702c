"""Fast DICOM header reader for little-endian transfer syntaxes.

Reads the element stream of a Part 10 file up to the pixel data with ``struct`` over one ``bytes``
buffer and converts values only when asked (promoted columns) or when the DICOM JSON is built. It
handles explicit VR little endian, implicit VR little endian and the encapsulated (compressed) syntaxes,
whose dataset is explicit VR little endian. Anything else (big endian, deflate, a missing preamble, an
unknown character set, undefined-length ``UN``, a VR it does not know) raises :class:`FastPathUnsupported`
and the caller falls back to pydicom, which stays the reference (see ``tests/tasks/dicom/test_header_fast.py``).

Written by hand because pydicom's reader spends most of its time in generic per-element machinery;
value decoding follows pydicom 3's rules (``pydicom.values``) so that the promoted values are identical.
"""

from __future__ import annotations

import struct
import threading
from bisect import bisect_left
from functools import lru_cache
from itertools import accumulate, islice
from operator import lt
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
_LONG_B = {v.encode(): v for v in LONG_VRS}
_SHORT_B = {v.encode(): v for v in SHORT_VRS}
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
TEXT_VRS = frozenset({"SH", "LO", "UC"})  # split, then strip each value (pydicom convert_text)
SINGLE_VRS = frozenset({"ST", "LT", "UT"})  # one value, backslash is text
NUMERIC_FMT = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
NUMERIC_SIZE = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "SV": 8, "UV": 8, "AT": 4}
CHARSETS = {"": "latin_1", "ISO_IR 6": "latin_1", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}

_U16x2 = struct.Struct("<HH")
_EXPL = struct.Struct("<HHHH")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
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
    **{int.from_bytes(b, "little"): (v, False) for b, v in _SHORT_B.items()},
    **{int.from_bytes(b, "little"): (v, True) for b, v in _LONG_B.items()},
}


def _parse(
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
    u32 = _U32.unpack_from
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
                if known == "SQ" or length == UNDEFINED:
                    start = pos
                    items, pos = _parse_items(buf, pos, length, True)
                    items.raw = buf[start:pos]
                    out[tag] = ("SQ", items)
                    if keys:
                        ktags.append(tag)  # type: ignore[union-attr]
                        kwholes.append(buf[start0:pos])  # type: ignore[union-attr]
                    continue
                if known is not None:
                    vr = known
        if vr == "SQ" or (length == UNDEFINED and vr == "UN"):
            start = pos
            items, pos = _parse_items(buf, pos, length, implicit)
            items.raw = buf[start:pos]
            out[tag] = ("SQ", items)
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


def _parse_items(buf: bytes, pos: int, length: int, implicit: bool) -> tuple[Items, int]:
    end = len(buf) if length == UNDEFINED else pos + length
    if length != UNDEFINED and end > len(buf):
        raise Truncated(f"sequence at byte {pos} needs {length} bytes")
    items = Items()
    while pos < end:
        if pos + 8 > len(buf):
            raise Truncated(f"item header at byte {pos} runs past the end")
        group, elem = _U16x2.unpack_from(buf, pos)
        (ilen,) = _U32.unpack_from(buf, pos + 4)
        tag = group << 16 | elem
        pos += 8
        if tag == SEQ_END:
            return items, pos
        if tag != ITEM:
            raise FastPathUnsupported(f"expected an item tag at byte {pos - 8}, found {tag:08X}")
        iend = len(buf) if ilen == UNDEFINED else pos + ilen
        if iend > len(buf):
            raise Truncated(f"item at byte {pos} needs {ilen} bytes")
        item, pos = _parse(buf, pos, iend, implicit, top=False)
        items.append(item)
    if length == UNDEFINED:
        raise Truncated("sequence without a delimiter at the end of the file")
    return items, pos


class _Template:
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


def _parse_with_template(
    buf: bytes, pos: int, n: int, implicit: bool, tpl: _Template
) -> tuple[Elements, int, list[int], list[bytes], list[tuple[str, Any]], list[int]]:
    """Top-level parse that copies runs of elements equal to the template's (one C-level comparison per
    run) and parses only the elements that differ.

    The result is the same as ``_parse``'s: a run is reused only when its bytes are identical at the
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
        # One element: the common short explicit VR inline, anything else through _parse.
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
            one, nxt = _parse(buf, pos, pos + 1, implicit, True, one_t, one_w)
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
        (length,) = _U32.unpack_from(buf, pos + 4)
        pos += 8
    else:
        vrb = buf[pos + 4 : pos + 6]
        if vrb in _LONG_B:
            if pos + 12 > n:
                raise Truncated("file ends inside the pixel data element header")
            (length,) = _U32.unpack_from(buf, pos + 8)
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
        group, elem = _U16x2.unpack_from(buf, pos)
        (flen,) = _U32.unpack_from(buf, pos + 4)
        tag = group << 16 | elem
        pos += 8
        if tag == SEQ_END:
            return
        if tag != ITEM or flen == UNDEFINED:
            raise Truncated(f"bad fragment tag {tag:08X} in encapsulated pixel data")
        pos += flen
        if pos > n:
            raise Truncated("encapsulated pixel data fragment runs past the end of the file")


class FastHeader:
    """The parsed header of one file: file meta, dataset elements and where the pixel data starts.

    Use :func:`read_fast` to make one. Values are decoded on demand by :meth:`strings`, :meth:`numbers`,
    ... with pydicom 3's rules, so they equal ``pydicom.dcmread(...)``'s values.

    Notes
    -----
    Read-only: a file read through a series layout shares ``meta`` and ``tags`` (and the static values)
    with the layout and the next files of the series.
    """

    __slots__ = ("meta", "elements", "transfer_syntax", "implicit", "encoding", "pixel_pos", "tags", "wholes",
                 "layout", "varied")

    def __init__(self, meta: Elements, elements: Elements, transfer_syntax: str, implicit: bool,
                 encoding: str, pixel_pos: int, tags: list[int], wholes: list[bytes],
                 layout: _Layout | None = None, varied: list[tuple[int, int]] | None = None) -> None:
        self.tags = tags  # shared with the layout (and the next files): do not modify
        self.wholes = wholes
        self.meta = meta
        self.elements = elements
        self.transfer_syntax = transfer_syntax
        self.implicit = implicit
        self.encoding = encoding
        self.pixel_pos = pixel_pos
        self.layout = layout  # the layout this file matched (None: parsed in full)
        self.varied = varied  # (index in tags, tag) of the elements that vary in the layout

    # -- value access (the HeaderView protocol of tasks.dicom.header) --------------------------------
    def strings(self, tag: int) -> list[str] | None:
        """All values of a string element, decoded as pydicom does; ``None`` if absent or empty."""
        e = self.elements.get(tag)
        if e is None:
            return None
        try:
            vals = decode_strings(e[0], e[1], self.encoding)
        except UnicodeDecodeError as err:
            raise FastPathUnsupported(f"tag {tag:08X}: not {self.encoding}") from err
        return vals or None

    def numbers(self, tag: int) -> list[float] | None:
        """All values of a numeric element (DS, IS or binary numbers) as floats."""
        e = self.elements.get(tag)
        if e is None:
            return None
        vals = decode_numbers(e[0], e[1])
        return vals or None

    def has(self, tag: int) -> bool:
        return tag in self.elements


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


class _Layout:
    """The byte layout of a series' files: static runs of bytes between the few elements that vary.

    Built from two consecutive files with the same elements (file meta and dataset, in order); the next
    file matches it when every static run is byte-identical at its position and every varying element
    has the same tag and VR. A match reuses the parse of the static elements, so the result equals a
    plain parse (identical bytes parse identically; the checks of :func:`read_fast` are re-run).
    """

    __slots__ = ("runs", "var_idx", "var_tag", "var_vrb", "var_vr", "var_implicit", "n_meta", "var_meta",
                 "meta_static", "mwholes", "meta", "elements", "tags", "wholes", "implicit", "ordered", "cache",
                 "steps", "syntax", "encoding")

    def __init__(self, ctags: list[int], cwholes: list[bytes], cvals: list[tuple[str, Any]], var: list[int],
                 n_meta: int, implicit: bool, ts: str, encoding: str) -> None:
        bounds = [-1, *var, len(ctags)]
        self.runs = [b"".join(cwholes[a + 1 : b]) for a, b in zip(bounds, bounds[1:], strict=False)]
        self.var_idx = [i - n_meta for i in var]  # dataset index (negative: a file meta element)
        self.var_tag = [ctags[i] for i in var]
        self.var_vrb = [cwholes[i][4:6] for i in var]
        self.var_vr = [cvals[i][0] for i in var]
        self.var_implicit = [implicit and i >= n_meta for i in var]
        self.n_meta = n_meta
        self.var_meta = sum(i < n_meta for i in var)
        self.meta_static = sum(len(cwholes[i]) for i in range(n_meta) if i not in var)
        self.mwholes = cwholes[:n_meta]
        self.meta: Elements = dict(zip(ctags[:n_meta], cvals[:n_meta], strict=True))
        self.tags = ctags[n_meta:]
        self.wholes = cwholes[n_meta:]
        self.elements: Elements = dict(zip(self.tags, cvals[n_meta:], strict=True))
        self.implicit = implicit
        self.ordered = all(map(lt, self.tags, islice(self.tags, 1, None)))
        self.cache: dict[Any, Any] = {}  # per-layout memos of tasks.dicom.header and .dicom_json
        # (static run before, tag (and VR) bytes, implicit, VR, dataset index, whole bytes) per varying element
        self.steps = [(self.runs[k], cwholes[i][:4 if self.var_implicit[k] else 6], self.var_implicit[k],
                       self.var_vr[k], i - n_meta, cwholes[i]) for k, i in enumerate(var)]
        # The file's syntax and character set are this file's unless an element that decides them varies
        # (the transfer syntax, or the first dataset element: pydicom's VR sniffing, see _syntax).
        first = ctags[n_meta] if len(ctags) > n_meta else None
        decides = {0x00020010, first} if implicit else {0x00020010}
        self.syntax = None if decides & set(self.var_tag) else (ts, implicit)
        self.encoding = None if 0x00080005 in self.var_tag else encoding

    @staticmethod
    def simple(tag: int, whole: bytes, val: tuple[str, Any], implicit: bool) -> bool:
        """A varying element must be one the matcher re-reads by itself: defined length, no items."""
        if tag in PIXEL_TAGS or tag >> 16 == 0xFFFE or not isinstance(val[1], bytes):
            return False
        if implicit:
            return val[0] not in ("SQ", "UN") and len(whole) == 8 + _U32.unpack_from(whole, 4)[0]
        return whole[4:6] in _SHORT_B and len(whole) == 8 + (whole[6] | whole[7] << 8)


class _State(threading.local):
    """Per-thread reader state: the last full parse (template), its entries and the current layout."""

    last: _Template | None = None
    prev: tuple[list[int], list[bytes]] | None = None
    layout: _Layout | None = None


_TEMPLATE = _State()
_PIXEL_PAIRS = frozenset((t >> 16, t & 0xFFFF) for t in PIXEL_TAGS)
TIGHTEN = 3  # a layout with this many varying elements that did not vary is rebuilt from this file


def reset_state() -> None:
    """Forget this thread's previous files (template and layout)."""
    _TEMPLATE.last = None
    _TEMPLATE.prev = None
    _TEMPLATE.layout = None


def _match(buf: bytes, lay: _Layout) -> tuple[int, list[tuple[bytes, tuple[str, Any]]], int, int] | None:
    """Where the dataset ends, the varying elements, how many of them equal the layout's and the bytes
    of the varying file meta elements; ``None``: no match (parse the file in full)."""
    pos, n = 132, len(buf)
    new: list[tuple[bytes, tuple[str, Any]]] = []
    same = meta_len = 0
    for run, head, implicit, vr, j, base in lay.steps:
        if not buf.startswith(run, pos):
            return None
        pos += len(run)
        if not buf.startswith(head, pos) or pos + 8 > n:
            return None
        nxt = pos + 8 + (_U32.unpack_from(buf, pos + 4)[0] if implicit else _U16.unpack_from(buf, pos + 6)[0])
        if nxt > n:
            return None
        whole = buf[pos:nxt]
        same += whole == base
        if j < 0:
            meta_len += nxt - pos
        new.append((whole, (vr, buf[pos + 8 : nxt])))
        pos = nxt
    run = lay.runs[-1]
    if not buf.startswith(run, pos):
        return None
    pos += len(run)
    if pos < n and (pos + 8 > n or _U16x2.unpack_from(buf, pos) not in _PIXEL_PAIRS):
        return None  # more elements, or a truncated one: the full parse decides
    return pos, new, same, meta_len


def _syntax(buf: bytes, meta: Elements, data_start: int) -> tuple[str, bool]:
    """Transfer syntax and whether it is implicit VR; raises for what the fast reader does not read."""
    ts_e = meta.get(0x00020010)
    if ts_e is None:
        raise FastPathUnsupported("file meta has no TransferSyntaxUID")
    ts = bytes(ts_e[1]).decode("latin_1").rstrip("\0 ")
    if ts in (EXPLICIT_BE, DEFLATED_LE):
        raise FastPathUnsupported(f"transfer syntax {ts}")
    implicit = ts == IMPLICIT_LE
    # pydicom checks the first element's VR bytes and switches syntax if the file disagrees; so do we.
    if data_start + 6 <= len(buf):
        vr_bytes = buf[data_start + 4 : data_start + 6]
        looks_explicit = vr_bytes in _SHORT_B or vr_bytes in _LONG_B
        if looks_explicit == implicit:
            raise FastPathUnsupported("dataset VR encoding differs from the transfer syntax")
    return ts, implicit


def _charset(elements: Elements) -> str:
    cs = elements.get(0x00080005)
    if cs is None:
        return "latin_1"
    name = bytes(cs[1]).decode("latin_1").strip(" \0")
    if name not in CHARSETS:
        raise FastPathUnsupported(f"SpecificCharacterSet {name!r}")
    return CHARSETS[name]


def _read_matched(buf: bytes, lay: _Layout) -> FastHeader | None:
    """:func:`read_fast` for a file that matches ``lay``; ``None`` if it does not."""
    m = _match(buf, lay)
    if m is None:
        return None
    pixel_pos, new, same, meta_len = m
    meta = lay.meta
    elements = lay.elements.copy()
    wholes = lay.wholes.copy()
    data_start = 132 + lay.meta_static + meta_len
    if lay.var_meta:
        meta = meta.copy()
        if buf[132:140] == b"\x02\x00\x00\x00UL\x04\x00" and 144 + _U32.unpack_from(buf, 140)[0] > data_start:
            return None  # the stated group length reaches into the dataset: the full parse decides
    varied = []
    for j, tag, (whole, val) in zip(lay.var_idx, lay.var_tag, new, strict=True):
        if j < 0:
            meta[tag] = val
        else:
            elements[tag] = val
            wholes[j] = whole
            varied.append((j, tag))
    if lay.syntax is None:
        ts, implicit = _syntax(buf, meta, data_start)
        if implicit != lay.implicit:
            return None
    else:
        ts, implicit = lay.syntax
    encoding = lay.encoding or _charset(elements)
    check_pixel_data(buf, pixel_pos, implicit)
    if same >= TIGHTEN:  # learnt across two series: learn it again from this file, with what varies here
        mwholes = lay.mwholes.copy()
        for j, (w, _) in zip(lay.var_idx, new, strict=True):
            if j < 0:
                mwholes[lay.n_meta + j] = w
        cwholes = mwholes + wholes
        old = lay.mwholes + lay.wholes
        var = [lay.n_meta + j for j in lay.var_idx if cwholes[lay.n_meta + j] != old[lay.n_meta + j]]
        cvals = [*meta.values(), *map(elements.__getitem__, lay.tags)]
        _TEMPLATE.layout = _Layout([*meta, *lay.tags], cwholes, cvals, var, lay.n_meta, implicit, ts, encoding)
    return FastHeader(meta, elements, ts, implicit, encoding, pixel_pos, lay.tags, wholes, lay, varied)


def _new_layout(prev: tuple[list[int], list[bytes]] | None, ctags: list[int], cwholes: list[bytes],
                cvals: list[tuple[str, Any]], n_meta: int, implicit: bool, ts: str, encoding: str) -> _Layout | None:
    """A layout from the previous file's and this file's entries, if they have the same elements."""
    if prev is None or prev[0] != ctags or any(t >> 16 != 2 for t in ctags[:n_meta]):
        return None
    var = [i for i, (a, b) in enumerate(zip(prev[1], cwholes, strict=True)) if a is not b and a != b]
    if not all(_Layout.simple(ctags[i], cwholes[i], cvals[i], implicit and i >= n_meta) for i in var):
        return None
    return _Layout(ctags, cwholes, cvals, var, n_meta, implicit, ts, encoding)


def read_fast(buf: bytes) -> FastHeader:
    """Parse the header of a DICOM Part 10 file held in ``buf`` (pixel data is located, not read).

    Consecutive files of a series mostly repeat each other byte for byte: a file that matches the
    layout learnt from the previous two (see :class:`_Layout`) re-reads only the elements that vary.

    Raises
    ------
    FastPathUnsupported
        Use pydicom for this file (no preamble, big endian, deflate, unknown character set, ...).
    Truncated
        The file ends inside the header or the pixel data.
    """
    if len(buf) < 132 or buf[128:132] != b"DICM":
        raise FastPathUnsupported("no DICM preamble")
    st = _TEMPLATE
    if st.layout is not None:
        fh = _read_matched(buf, st.layout)
        if fh is not None:
            return fh
    st.layout = None
    # File meta: explicit VR LE, group 0002, read until the group changes.
    pos = 132
    meta: Elements = {}
    mtags: list[int] = []
    mwholes: list[bytes] = []
    n = len(buf)
    if buf[132:140] == b"\x02\x00\x00\x00UL\x04\x00" and n >= 144:  # group length: parse the group at once
        (glen,) = _U32.unpack_from(buf, 140)
        meta, pos = _parse(buf, 132, min(144 + glen, n), False, False, mtags, mwholes)
    while pos + 8 <= n:  # elements of group 2 past the stated length (or no group length at all)
        group = buf[pos] | buf[pos + 1] << 8
        if group != 2:
            break
        part, pos = _parse(buf, pos, pos + 1, False, False, mtags, mwholes)  # one element
        meta.update(part)
    ts, implicit = _syntax(buf, meta, pos)
    tpl = st.last
    if tpl is not None and tpl.implicit == implicit and tpl.data_start == pos:
        elements, pixel_pos, tags, wholes, vals, varying = _parse_with_template(buf, pos, n, implicit, tpl)
    else:
        tags, wholes = [], []
        elements, pixel_pos = _parse(buf, pos, n, implicit, True, tags, wholes)
        vals = list(map(elements.__getitem__, tags))
        varying = None
    st.last = _Template(buf, pos, implicit, tags, wholes, vals, varying)
    prev, st.prev = st.prev, None
    encoding = _charset(elements)
    check_pixel_data(buf, pixel_pos, implicit)
    if len(mtags) == len(meta) and len(tags) == len(elements):  # no repeated tag: the entries are the file
        ctags, cwholes = mtags + tags, mwholes + wholes
        st.layout = _new_layout(prev, ctags, cwholes, [*map(meta.__getitem__, mtags), *vals], len(mtags),
                                implicit, ts, encoding)
        st.prev = (ctags, cwholes)
    return FastHeader(meta, elements, ts, implicit, encoding, pixel_pos, tags, wholes)
