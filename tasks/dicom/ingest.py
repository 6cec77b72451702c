"""Pure batch functions of ingest: read and parse a batch of files, resolve duplicate instances.

:func:`index_batch` runs on a worker (one batch of listed files -> Arrow tables); :func:`resolve_batch`
runs in the driver, in path order, so the instance kept for a SOPInstanceUID is the same whatever the
number of workers or the batch boundaries: the first file by path within a run, the earlier run across runs.
"""

from __future__ import annotations

import hashlib
import struct
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from schemas import get_table
from tasks.dicom.header import SERIES_COLUMNS, SERIES_PART, HeaderError, QuarantineReason, parse_header
from tasks.dicom.series import SERIES_INPUT_COLUMNS, SeriesPartial, series_partials, study_descriptions
from tasks.dicom.sources import DicomSource, SourceFile

#: Columns the series/studies aggregation needs (``dicom_json`` is not among them).
NARROW_COLUMNS: tuple[str, ...] = ("sop_instance_uid", "path", *SERIES_INPUT_COLUMNS)


_SERIES_SET = frozenset(SERIES_COLUMNS)


def _path(sf: SourceFile) -> str:
    return sf.path


def _read_each(source: DicomSource, files: Sequence[SourceFile]) -> Iterator[tuple[SourceFile, bytes | Exception]]:
    for sf in files:
        try:
            data = source.read_bytes(sf.path)
        except Exception as e:  # noqa: BLE001 - reported as the file's quarantine reason
            yield sf, e
            continue
        yield sf, data


def content_hash(data: bytes) -> str:
    """First 128 bits of SHA-256 of ``data`` as hex (the ``content_hash`` column; SHA-NI makes it the
    fastest of hashlib's hashes here)."""
    return hashlib.sha256(data).hexdigest()[:32]


@dataclass
class BatchResult:
    """Parsed rows of one batch, in the batch's path order.

    ``parsed`` are instance rows (one per file that parsed; duplicates not yet resolved) and
    ``quarantined`` quarantine rows; ``listed`` the batch as listed (for the manifest); ``fast`` how many
    files the fast reader parsed. ``series`` and ``descriptions`` (filled by :func:`summarise_batch`)
    are the series partials and study description counts of ``parsed``.
    """

    parsed: pa.Table
    quarantined: pa.Table
    listed: list[SourceFile]
    fast: int = 0
    series: dict[str, SeriesPartial] | None = None
    descriptions: dict[str, Counter[str]] = field(default_factory=dict)


def summarise_batch(result: BatchResult) -> BatchResult:
    """Add the series partials and study descriptions of the parsed rows (done where the batch ran)."""
    result.series = series_partials(result.parsed)
    result.descriptions = study_descriptions(result.parsed)
    return result


def index_batch(
    source: DicomSource,
    files: Sequence[SourceFile],
    *,
    key: bytes,
    default_issuer: str | None = None,
    fast: bool = True,
) -> BatchResult:
    """Read, hash and parse ``files``; bad files become quarantine rows, never exceptions.

    Parameters
    ----------
    source
        Where to read the files.
    files
        The batch (any order; rows come back sorted by path).
    key
        Pseudonymisation key for ``person_key``.
    default_issuer
        IssuerOfPatientID to assume when a file has none.
    fast
        ``False`` uses the pydicom reference reader only.
    """
    rows: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    n_fast = 0
    ordered = sorted(files, key=_path)
    reader = getattr(source, "read_files", None)
    for sf, data in (reader(ordered) if reader is not None else _read_each(source, ordered)):
        if not isinstance(data, bytes):  # any read failure is a property of this file
            bad.append({"path": sf.path, "size_bytes": None, "content_hash": None,
                        "reason": QuarantineReason.UNREADABLE.value, "message": f"{type(data).__name__}: {data}"})
            continue
        h = content_hash(data)
        try:
            row = parse_header(data, key=key, default_issuer=default_issuer, fast=fast)
        except HeaderError as e:
            bad.append({"path": sf.path, "size_bytes": len(data), "content_hash": h,
                        "reason": e.reason.value, "message": e.message[:500]})
            continue
        except Exception as e:  # noqa: BLE001 - a reader bug must not stop the batch
            bad.append({"path": sf.path, "size_bytes": len(data), "content_hash": h,
                        "reason": QuarantineReason.PARSE_ERROR.value, "message": f"{type(e).__name__}: {e}"[:500]})
            continue
        n_fast += row["parser"] == "fast"
        row["path"] = sf.path
        row["size_bytes"] = len(data)
        row["content_hash"] = h
        rows.append(row)
    parsed = _columnar("instances", rows)
    qt = _to_table("quarantine", bad)
    return BatchResult(parsed=parsed, quarantined=qt, listed=list(files), fast=n_fast)


def _columnar(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows -> Arrow column by column with the declared types (faster than ``from_pylist`` + cast)."""
    decl = get_table(name)
    if not rows:
        return empty(name)
    schema = decl.arrow_schema()
    # Series-level values are shared dicts (header.SERIES_PART): convert each once, then take per row.
    uniq: dict[int, int] = {}
    shared: list[dict[str, Any]] = []
    codes = []
    for r in rows:
        obj = r.get(SERIES_PART) or r
        c = uniq.get(id(obj))
        if c is None:
            c = uniq[id(obj)] = len(shared)
            shared.append(obj)
        codes.append(c)
    idx = pa.array(codes, pa.int32())
    arrays = []
    for f in schema:
        if f.name in _SERIES_SET and len(shared) < len(rows):
            arrays.append(pa.array([u.get(f.name) for u in shared], type=f.type).take(idx))
        else:
            arrays.append(pa.array([r.get(f.name) for r in rows], type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def empty(name: str) -> pa.Table:
    """The declared empty table (``Schema.empty_table`` imports pandas: about a second and tens of MB)."""
    return pa.Table.from_batches([], schema=get_table(name).arrow_schema())


def _to_table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    decl = get_table(name)
    if not rows:
        return empty(name)
    schema = pa.schema([f for f in decl.arrow_schema() if f.name in rows[0]])
    return decl.conform(pa.Table.from_pylist(rows, schema=schema))


@dataclass
class Resolved:
    """A batch after duplicate resolution: what to append, and the manifest rows of its files."""

    instances: pa.Table
    duplicates: pa.Table
    quarantine: pa.Table
    manifest: pa.Table


def resolve_batch(batch: BatchResult, known: KnownInstances | dict[str, tuple[str, str]], run_id: str) -> Resolved:
    """Keep the first file of each SOPInstanceUID; record the others as duplicates.

    Parameters
    ----------
    batch
        Output of :func:`index_batch`.
    known
        SOPInstanceUID -> (path, content_hash) of instances already indexed (a :class:`KnownInstances`,
        or a dict); updated in place.
    run_id
        Written to the manifest, duplicates and quarantine rows.
    """
    p = batch.parsed
    sops = p.column("sop_instance_uid").to_pylist()
    paths = p.column("path").to_pylist()
    hashes = p.column("content_hash").to_pylist()
    if isinstance(known, KnownInstances):
        firsts = known.lookup(sops)
    else:
        firsts = {sop: known[sop] for sop in sops if sop in known}
    keep: list[int] = []
    dups: list[dict[str, Any]] = []
    added: dict[str, tuple[str, str]] = {}
    status: dict[str, tuple[str, str | None, str | None]] = {}
    for i, (sop, path, h) in enumerate(zip(sops, paths, hashes, strict=True)):
        first = firsts.get(sop)
        if first is None or first[0] == path:
            firsts[sop] = added[sop] = (path, h)
            keep.append(i)
            status[path] = ("indexed", h, sop)
        else:
            dups.append({"path": path, "sop_instance_uid": sop, "indexed_path": first[0], "content_hash": h,
                         "is_identical": first[1] == h, "run_id": run_id})
            status[path] = ("duplicate", h, sop)
    known.update(added)
    q = batch.quarantined
    for path, h in zip(q.column("path").to_pylist(), q.column("content_hash").to_pylist(), strict=True):
        status[path] = ("quarantined", h, None)
    listed = sorted(batch.listed, key=_path)
    cols: dict[str, list[Any]] = {"path": [], "size_bytes": [], "mtime": [], "content_hash": [], "status": [],
                                  "sop_instance_uid": []}
    for sf in listed:
        st, h, sop = status[sf.path]
        cols["path"].append(sf.path)
        cols["size_bytes"].append(sf.size)
        cols["mtime"].append(sf.mtime)
        cols["content_hash"].append(h)
        cols["status"].append(st)
        cols["sop_instance_uid"].append(sop)
    mschema = get_table("manifest").arrow_schema()
    manifest = pa.Table.from_arrays(
        [pa.array(cols[f.name], f.type) if f.name in cols else pa.array([run_id] * len(listed), f.type)
         for f in mschema], schema=mschema)
    q = q.set_column(q.schema.get_field_index("run_id"), "run_id", pa.array([run_id] * q.num_rows, pa.string()))
    return Resolved(
        instances=p if len(keep) == p.num_rows else p.take(pa.array(keep, pa.int64())),
        duplicates=_to_table("duplicates", dups),
        quarantine=q,
        manifest=manifest,
    )


class KnownInstances:
    """SOPInstanceUID -> (path, content hash) of the instances indexed so far, compact in memory.

    Memory holds 16 bytes per instance (a 64-bit key and a file offset, in sorted NumPy runs merged like
    a log-structured merge tree); the UIDs, paths and hashes go to a temporary spill file and are read
    back only for a key that matches (a duplicate, or a rare key collision, which the exact UID settles).
    """

    def __init__(self) -> None:
        self._spill = tempfile.TemporaryFile(prefix="osteolake-known-")
        self._end = 0
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        self._dead: set[int] = set()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        """Delete the spill file."""
        self._spill.close()

    def __enter__(self) -> KnownInstances:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _keys(sops: Sequence[str]) -> np.ndarray:
        return np.fromiter(map(hash, sops), dtype=np.int64, count=len(sops))  # str hash: stable in a process

    def update(self, items: Mapping[str, tuple[str, str | None]]) -> None:
        """Record (or re-point) instances: SOPInstanceUID -> (path, content hash)."""
        if not items:
            return
        old = self.lookup(list(items))
        for sop in old:
            self._dead.update(self._offsets_of(sop))
            self._count -= 1
        sops = list(items)
        offsets = np.empty(len(sops), np.int64)
        chunks = []
        pos = self._end
        for i, sop in enumerate(sops):
            path, h = items[sop]
            rec = b"\0".join((sop.encode(), path.encode("utf-8", "surrogateescape"), (h or "").encode())) + b"\n"
            chunks.append(_REC.pack(len(rec)) + rec)
            offsets[i] = pos
            pos += _REC.size + len(rec)
        self._spill.seek(self._end)
        self._spill.write(b"".join(chunks))
        self._end = pos
        self._count += len(sops)
        keys = self._keys(sops)
        order = np.argsort(keys, kind="stable")
        self._runs.append((keys[order], offsets[order]))
        while len(self._runs) > 1 and len(self._runs[-1][0]) * 2 >= len(self._runs[-2][0]):
            (k2, o2), (k1, o1) = self._runs.pop(), self._runs.pop()
            k, o = np.concatenate([k1, k2]), np.concatenate([o1, o2])
            order = np.argsort(k, kind="stable")
            self._runs.append((k[order], o[order]))

    def _read(self, offset: int) -> tuple[str, str, str | None]:
        self._spill.seek(offset)
        (n,) = _REC.unpack(self._spill.read(_REC.size))
        sop, path, h = self._spill.read(n)[:-1].split(b"\0")
        return sop.decode(), path.decode("utf-8", "surrogateescape"), h.decode() or None

    def _candidates(self, sops: Sequence[str]) -> Iterator[tuple[int, int]]:
        """(index in ``sops``, spill offset) of every stored record whose key matches."""
        keys = self._keys(sops)
        for rk, ro in self._runs:
            lo = np.searchsorted(rk, keys, "left")
            hi = np.searchsorted(rk, keys, "right")
            for i in np.flatnonzero(hi > lo):
                for off in ro[lo[i] : hi[i]].tolist():
                    if off not in self._dead:
                        yield int(i), off

    def _offsets_of(self, sop: str) -> list[int]:
        return [off for _, off in self._candidates([sop]) if self._read(off)[0] == sop]

    def lookup(self, sops: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """The known instances among ``sops``: SOPInstanceUID -> (path, content hash)."""
        out: dict[str, tuple[str, str | None]] = {}
        for i, off in self._candidates(sops):
            sop, path, h = self._read(off)
            if sop == sops[i]:
                out[sop] = (path, h)
        return out

    def drop_paths(self, paths: set[str]) -> dict[str, str]:
        """Forget the instances indexed from ``paths``; returns their SOPInstanceUID -> path.

        Notes
        -----
        Reads the whole spill file: for changed files, which are few.
        """
        out: dict[str, str] = {}
        if not paths:
            return out
        live = {int(o) for _, ro in self._runs for o in ro.tolist()} - self._dead
        for off in sorted(live):
            sop, path, _ = self._read(off)
            if path in paths:
                out[sop] = path
                self._dead.add(off)
                self._count -= 1
        return out


_REC = struct.Struct("<I")
