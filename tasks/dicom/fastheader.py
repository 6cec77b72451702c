"""Fast DICOM header reader for little-endian transfer syntaxes: series layouts over the element walk.

The element walk (:mod:`tasks.dicom.elements`) parses one file; a series layout learnt from two files lets
the next files of the series skip it (only the few elements that vary are read).

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

import threading
from itertools import islice
from operator import lt
from typing import Any

from tasks.dicom.elements import (
    BINARY_VRS,
    CHARSETS,
    DEFLATED_LE,
    EXPLICIT_BE,
    IMPLICIT_LE,
    LONG_VR_BYTES,
    NUMERIC_FMT,
    NUMERIC_SIZE,
    PIXEL_TAGS,
    SHORT_VR_BYTES,
    U16,
    U16X2,
    U32,
    Elements,
    FastPathUnsupported,
    Template,
    Truncated,
    check_pixel_data,
    decode_numbers,
    decode_strings,
    parse_elements,
    parse_with_template,
)

__all__ = ["FastHeader", "read_fast", "reset_state", "FastPathUnsupported", "Truncated", "check_pixel_data",
           "decode_strings", "decode_numbers", "Elements", "BINARY_VRS", "NUMERIC_FMT", "NUMERIC_SIZE"]


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
            return val[0] not in ("SQ", "UN") and len(whole) == 8 + U32.unpack_from(whole, 4)[0]
        return whole[4:6] in SHORT_VR_BYTES and len(whole) == 8 + (whole[6] | whole[7] << 8)


class _State(threading.local):
    """Per-thread reader state: the last full parse (template), its entries and the current layout."""

    last: Template | None = None
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
        nxt = pos + 8 + (U32.unpack_from(buf, pos + 4)[0] if implicit else U16.unpack_from(buf, pos + 6)[0])
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
    if pos < n and (pos + 8 > n or U16X2.unpack_from(buf, pos) not in _PIXEL_PAIRS):
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
        looks_explicit = vr_bytes in SHORT_VR_BYTES or vr_bytes in LONG_VR_BYTES
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
        if buf[132:140] == b"\x02\x00\x00\x00UL\x04\x00" and 144 + U32.unpack_from(buf, 140)[0] > data_start:
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
        (glen,) = U32.unpack_from(buf, 140)
        meta, pos = parse_elements(buf, 132, min(144 + glen, n), False, False, mtags, mwholes)
    while pos + 8 <= n:  # elements of group 2 past the stated length (or no group length at all)
        group = buf[pos] | buf[pos + 1] << 8
        if group != 2:
            break
        part, pos = parse_elements(buf, pos, pos + 1, False, False, mtags, mwholes)  # one element
        meta.update(part)
    ts, implicit = _syntax(buf, meta, pos)
    tpl = st.last
    if tpl is not None and tpl.implicit == implicit and tpl.data_start == pos:
        elements, pixel_pos, tags, wholes, vals, varying = parse_with_template(buf, pos, n, implicit, tpl)
    else:
        tags, wholes = [], []
        elements, pixel_pos = parse_elements(buf, pos, n, implicit, True, tags, wholes)
        vals = list(map(elements.__getitem__, tags))
        varying = None
    st.last = Template(buf, pos, implicit, tags, wholes, vals, varying)
    prev, st.prev = st.prev, None
    encoding = _charset(elements)
    check_pixel_data(buf, pixel_pos, implicit)
    if len(mtags) == len(meta) and len(tags) == len(elements):  # no repeated tag: the entries are the file
        ctags, cwholes = mtags + tags, mwholes + wholes
        st.layout = _new_layout(prev, ctags, cwholes, [*map(meta.__getitem__, mtags), *vals], len(mtags),
                                implicit, ts, encoding)
        st.prev = (ctags, cwholes)
    return FastHeader(meta, elements, ts, implicit, encoding, pixel_pos, tags, wholes)
