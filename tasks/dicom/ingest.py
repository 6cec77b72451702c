"""Pure batch functions of ingest: read and parse a batch of files, resolve duplicate instances.

:func:`index_batch` runs on a worker (one batch of listed files -> Arrow tables); :func:`resolve_batch`
runs in the driver, in path order, so the instance kept for a SOPInstanceUID is the same whatever the
number of workers or the batch boundaries: the first file by path within a run, the earlier run across runs.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas import get_table
from tasks.arrow_pool import use_arrow_pool
from tasks.dicom.header import SERIES_COLUMNS, SERIES_PART, HeaderError, QuarantineReason, parse_header
from tasks.dicom.series import (
    SERIES_INPUT_COLUMNS,
    SeriesPartial,
    pack_partials,
    series_partials,
    study_descriptions,
    unpack_partials,
)
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
    ``quarantined`` quarantine rows; ``listed`` the batch as listed, with the size and mtime read from
    the file where the listing had none (for the manifest); ``fast`` how many files the fast reader
    parsed. :func:`summarise_batch` adds, where the batch ran, what lets the driver do little per file:
    ``series`` and ``descriptions`` (series partials and study description counts of ``parsed``),
    ``manifest`` (the batch's manifest rows, status ``indexed`` or ``quarantined``, no run id) and
    ``keys``/``records`` (duplicate-map keys and spill records of ``parsed``, see :class:`KnownInstances`).
    """

    parsed: pa.Table
    quarantined: pa.Table
    listed: list[SourceFile]
    fast: int = 0
    series: dict[str, SeriesPartial] | None = None
    descriptions: dict[str, Counter[str]] = field(default_factory=dict)
    manifest: pa.Table | None = None
    keys: np.ndarray | None = None
    records: tuple[bytes, np.ndarray] | None = None
    staged_rows: dict[str, int] = field(default_factory=dict)

    @property
    def staged(self) -> frozenset[str]:
        """The tables whose rows of this batch were written where it ran (see ``staged_rows``)."""
        return frozenset(self.staged_rows)

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        # Pickled as one blob with its NumPy and Arrow buffers in-band: Dask would otherwise send each of
        # them (a hundred a batch: a position array per series) as a message frame of its own, and the
        # driver's event loop reads, wraps and tracks every frame.
        # The series partials travel as a few lists and two arrays (see :func:`pack_partials`).
        state = dict(self.__dict__)
        if self.series is not None:
            state["series"] = pack_partials(self.series)
        return _unpickle_result, (pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL),)


def _unpickle_result(blob: bytes) -> BatchResult:
    state = pickle.loads(blob)  # noqa: S301 - a worker's result in this run's cluster
    if state["series"] is not None:
        state["series"] = unpack_partials(state["series"])
    result = BatchResult.__new__(BatchResult)
    result.__dict__.update(state)
    return result


def narrow_for_driver(result: BatchResult) -> BatchResult:
    """Of a batch whose instance rows were written where it ran, keep none of the columns of ``parsed``,
    only its row count (a column ``_rows`` of nulls): duplicate resolution reads the UIDs, paths and hashes
    it needs from the spill records (:func:`records_at`), and a batch that loses rows to duplicates is
    re-summarised where its file is rewritten (:func:`summarise_dropped`)."""
    # a null-typed column keeps the row count (a table without columns loses it when pickled) in no bytes
    result.parsed = pa.table({"_rows": pa.nulls(result.parsed.num_rows)})
    return result


def summarise_batch(result: BatchResult) -> BatchResult:
    """Add the series partials, study descriptions, manifest rows and duplicate-map records of a batch
    (done where the batch ran, so that the driver only merges them)."""
    p = result.parsed
    result.series = series_partials(p)
    result.descriptions = study_descriptions(p)
    sops = p.column("sop_instance_uid").to_pylist()
    paths = p.column("path").to_pylist()
    hashes = p.column("content_hash").to_pylist()
    result.keys = sop_keys(sops)
    result.records = spill_records(sops, paths, hashes)
    result.manifest = summarise_manifest(result)
    return result


def summarise_manifest(result: BatchResult) -> pa.Table:
    """The manifest rows of a batch in path order: status ``indexed`` (parsed) or ``quarantined``, no run id."""
    p = result.parsed
    paths = p.column("path").to_pylist()
    status = dict.fromkeys(paths, "indexed")
    hash_of = dict(zip(paths, p.column("content_hash").to_pylist(), strict=True))
    sop_of = dict(zip(paths, p.column("sop_instance_uid").to_pylist(), strict=True))
    for path, h in zip(result.quarantined.column("path").to_pylist(),
                       result.quarantined.column("content_hash").to_pylist(), strict=True):
        status[path] = "quarantined"
        hash_of[path] = h
    listed = sorted(result.listed, key=_path)
    return _manifest_table(
        [sf.path for sf in listed], [sf.size for sf in listed], [sf.mtime for sf in listed],
        [hash_of.get(sf.path) for sf in listed], [status[sf.path] for sf in listed],
        [sop_of.get(sf.path) for sf in listed], None)


def _manifest_table(paths: list[str], sizes: list[int | None], mtimes: list[float | None],
                    hashes: list[str | None], status: list[str], sops: list[str | None],
                    run_id: str | None) -> pa.Table:
    schema = get_table("manifest").arrow_schema()
    cols = {"path": paths, "size_bytes": sizes, "mtime": mtimes, "content_hash": hashes, "status": status,
            "sop_instance_uid": sops, "run_id": [run_id] * len(paths)}
    return pa.Table.from_arrays([pa.array(cols[f.name], f.type) for f in schema], schema=schema)


def records_at(records: tuple[bytes, np.ndarray], rows: Sequence[int]) -> tuple[list[str], list[str], list[str | None]]:
    """SOPInstanceUIDs, paths and content hashes of ``rows`` of :func:`spill_records` output."""
    blob, offsets = records
    sops, paths, hashes = [], [], []
    for i in rows:
        off = int(offsets[i])
        (n,) = _REC.unpack_from(blob, off)
        sop, path, h = blob[off + _REC.size : off + _REC.size + n - 1].split(b"\0")
        sops.append(sop.decode())
        paths.append(path.decode("utf-8", "surrogateescape"))
        hashes.append(h.decode() or None)
    return sops, paths, hashes


def sop_keys(sops: Sequence[str]) -> np.ndarray:
    """64-bit keys of SOPInstanceUIDs (BLAKE2b; the same in every process, unlike ``hash``)."""
    return np.fromiter((int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little", signed=True)
                        for s in sops), dtype=np.int64, count=len(sops))


def spill_records(sops: Sequence[str], paths: Sequence[str], hashes: Sequence[str | None]) -> tuple[bytes, np.ndarray]:
    """The spill-file records of instances (see :class:`KnownInstances`) and their offsets in the blob."""
    recs = [b"\0".join((s.encode(), p.encode("utf-8", "surrogateescape"), (h or "").encode())) + b"\n"
            for s, p, h in zip(sops, paths, hashes, strict=True)]
    framed = [_REC.pack(len(r)) + r for r in recs]
    offsets = np.zeros(len(framed), np.int64)
    if framed:
        np.cumsum([len(f) for f in framed[:-1]], out=offsets[1:])
    return b"".join(framed), offsets


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
    use_arrow_pool()  # wherever the batch runs (a Dask worker too): see tasks.arrow_pool
    rows: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    n_fast = 0
    ordered = sorted(files, key=_path)
    reader = getattr(source, "read_files", None)
    listed: list[SourceFile] = []
    for sf, data in (reader(ordered) if reader is not None else _read_each(source, ordered)):
        listed.append(sf)  # with the size and mtime read from the file, where the listing had none
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
    return BatchResult(parsed=parsed, quarantined=qt, listed=listed, fast=n_fast)


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
    """A batch after duplicate resolution: what to append, and the manifest rows of its files.

    ``dropped`` are the positions (in the batch's ``parsed``) of the duplicate rows left out.
    """

    instances: pa.Table
    duplicates: pa.Table
    quarantine: pa.Table
    manifest: pa.Table
    dropped: list[int] = field(default_factory=list)

    def summaries(self, batch: BatchResult, fix: DroppedSummary | None = None,
                  ) -> tuple[dict[str, SeriesPartial], dict[str, Counter[str]]]:
        """The batch's series partials and study descriptions without the dropped rows: the series that
        lost a row are summarised again from the kept rows and description counts are subtracted
        (``fix``: that work done where the batch's file was rewritten; else from ``batch.parsed``)."""
        if batch.series is None:
            return series_partials(self.instances), study_descriptions(self.instances)
        if not self.dropped:
            return batch.series, batch.descriptions
        if fix is None:
            fix = summarise_dropped(batch.parsed, self.instances, self.dropped)
        parts = {uid: p for uid, p in batch.series.items() if uid not in fix.touched}
        parts.update(fix.series)
        desc = {uid: Counter(c) for uid, c in batch.descriptions.items()}
        for uid, d in fix.gone_descriptions:
            if d:
                desc[uid][d] -= 1
        return parts, {uid: +c for uid, c in desc.items() if +c}


@dataclass
class DroppedSummary:
    """What the rows a batch lost to duplicates change in its summaries: the series they were in
    (``touched``) summarised again from the rows kept, and the (study UID, description) of each lost row."""

    touched: frozenset[str]
    series: dict[str, SeriesPartial]
    gone_descriptions: list[tuple[str, str | None]]


def summarise_dropped(rows: pa.Table, kept: pa.Table, dropped: Sequence[int]) -> DroppedSummary:
    """:class:`DroppedSummary` of a batch's instance ``rows`` (all of them, in batch order) losing the rows at
    positions ``dropped`` (``kept``: the rest, ``drop_positions(rows, dropped)``)."""
    gone = rows.take(pa.array(dropped, pa.int64()))
    touched = frozenset(gone.column("series_instance_uid").to_pylist())
    again = kept.filter(pc.is_in(kept.column("series_instance_uid"),
                                 value_set=pa.array(sorted(touched), pa.string())))
    pairs = list(zip(gone.column("study_instance_uid").to_pylist(), gone.column("study_description").to_pylist(),
                     strict=True))
    return DroppedSummary(touched, series_partials(again), pairs)


def resolve_batch(batch: BatchResult, known: KnownInstances | dict[str, tuple[str, str]], run_id: str) -> Resolved:
    """Keep the first file of each SOPInstanceUID; record the others as duplicates.

    Parameters
    ----------
    batch
        Output of :func:`index_batch` (best through :func:`summarise_batch`: then only the rows whose
        UID is known already or repeated in the batch are looked at one by one).
    known
        SOPInstanceUID -> (path, content_hash) of instances already indexed (a :class:`KnownInstances`,
        or a dict); updated in place.
    run_id
        Written to the manifest, duplicates and quarantine rows.
    """
    p = batch.parsed
    q = batch.quarantined
    q = q.set_column(q.schema.get_field_index("run_id"), "run_id", pa.array([run_id] * q.num_rows, pa.string()))
    n = p.num_rows
    keys = batch.keys
    compact = isinstance(known, KnownInstances) and keys is not None and batch.records is not None
    if isinstance(known, KnownInstances) and keys is not None and batch.records is not None:
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        suspect = known.maybe_known(keys) | (counts[inverse] > 1)
        rows = np.flatnonzero(suspect).tolist()
    else:
        rows = list(range(n))
    if "sop_instance_uid" in p.column_names:
        sub = p.take(pa.array(rows, pa.int64())) if len(rows) < n else p
        sops = sub.column("sop_instance_uid").to_pylist()
        paths = sub.column("path").to_pylist()
        hashes = sub.column("content_hash").to_pylist()
    elif batch.records is not None:  # rows written where the batch ran: the suspects' values are in the records
        sops, paths, hashes = records_at(batch.records, rows)
    else:
        raise ValueError("resolve_batch: a batch without instance columns needs its spill records")
    firsts = known.lookup(sops) if isinstance(known, KnownInstances) else \
        {sop: known[sop] for sop in sops if sop in known}
    dropped: list[int] = []
    dups: list[dict[str, Any]] = []
    repoint: dict[str, tuple[str, str]] = {}  # known already, from the same path (a changed file)
    added: dict[str, tuple[str, str]] = {}
    for i, sop, path, h in zip(rows, sops, paths, hashes, strict=True):
        first = firsts.get(sop)
        if first is None or first[0] == path:
            if first is not None:
                repoint[sop] = (path, h)
            firsts[sop] = added[sop] = (path, h)
        else:
            dropped.append(i)
            dups.append({"path": path, "sop_instance_uid": sop, "indexed_path": first[0], "content_hash": h,
                         "is_identical": first[1] == h, "run_id": run_id})
    if compact:
        keep = np.ones(n, bool)
        keep[dropped] = False
        keep[[i for i, sop in zip(rows, sops, strict=True) if sop in repoint]] = False
        known.add(keys, batch.records, keep)  # type: ignore[union-attr, arg-type]
        known.update(repoint)
    else:
        known.update(added)
    manifest = batch.manifest if batch.manifest is not None else summarise_manifest(batch)
    manifest = mark_duplicates(manifest, [d["path"] for d in dups])
    return Resolved(instances=drop_positions(p, dropped), duplicates=_to_table("duplicates", dups), quarantine=q,
                    manifest=with_run_id(manifest, run_id), dropped=dropped)


def mark_duplicates(manifest: pa.Table, paths: Sequence[str]) -> pa.Table:
    """Manifest rows with the ``status`` of ``paths`` set to ``duplicate``."""
    if not paths:
        return manifest
    is_dup = pc.is_in(manifest.column("path"), value_set=pa.array(list(paths), pa.string()))
    i = manifest.schema.get_field_index("status")
    return manifest.set_column(i, manifest.schema.field(i), pc.if_else(is_dup, "duplicate", manifest.column("status")))


def drop_positions(table: pa.Table, positions: Sequence[int]) -> pa.Table:
    """``table`` without the rows at ``positions``."""
    if not positions:
        return table
    keep = np.ones(table.num_rows, bool)
    keep[list(positions)] = False
    return table.filter(pa.array(keep))


def with_run_id(table: pa.Table, run_id: str) -> pa.Table:
    """``table`` with its ``run_id`` column set to ``run_id``."""
    i = table.schema.get_field_index("run_id")
    return table.set_column(i, table.schema.field(i), pa.array([run_id] * table.num_rows, pa.string()))


class KnownInstances:
    """SOPInstanceUID -> (path, content hash) of the instances indexed so far, compact in memory.

    Memory holds 16 bytes per instance (a 64-bit key from :func:`sop_keys` and a file offset, in sorted
    NumPy runs merged like a log-structured merge tree); the UIDs, paths and hashes go to a temporary
    spill file and are read back only for a key that matches (a duplicate, or a rare key collision,
    which the exact UID settles).
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

    def update(self, items: Mapping[str, tuple[str, str | None]]) -> None:
        """Record (or re-point) instances: SOPInstanceUID -> (path, content hash)."""
        if not items:
            return
        for sop in self.lookup(list(items)):
            self._dead.update(self._offsets_of(sop))
            self._count -= 1
        sops = list(items)
        self.add(sop_keys(sops), spill_records(sops, [items[s][0] for s in sops], [items[s][1] for s in sops]))

    def add(self, keys: np.ndarray, records: tuple[bytes, np.ndarray], mask: np.ndarray | None = None) -> None:
        """Record instances not known yet, from :func:`sop_keys` and :func:`spill_records` (only those
        where ``mask`` is true, if given)."""
        if not len(keys):
            return
        blob, rel = records
        self._spill.seek(self._end)
        self._spill.write(blob)
        offsets = rel + self._end
        self._end += len(blob)
        if mask is not None:
            keys, offsets = keys[mask], offsets[mask]
        if not len(keys):
            return
        self._count += len(keys)
        order = np.argsort(keys, kind="stable")
        self._runs.append((keys[order], offsets[order]))
        while len(self._runs) > 1 and len(self._runs[-1][0]) * 2 >= len(self._runs[-2][0]):
            (k2, o2), (k1, o1) = self._runs.pop(), self._runs.pop()
            k, o = np.concatenate([k1, k2]), np.concatenate([o1, o2])
            order = np.argsort(k, kind="stable")
            self._runs.append((k[order], o[order]))

    def maybe_known(self, keys: np.ndarray) -> np.ndarray:
        """Which keys match a stored key (a known instance, or a rare collision): a boolean mask."""
        hit = np.zeros(len(keys), bool)
        for rk, _ in self._runs:
            pos = np.minimum(np.searchsorted(rk, keys), len(rk) - 1)
            hit |= rk[pos] == keys
        return hit

    def _read(self, offset: int) -> tuple[str, str, str | None]:
        self._spill.seek(offset)
        (n,) = _REC.unpack(self._spill.read(_REC.size))
        sop, path, h = self._spill.read(n)[:-1].split(b"\0")
        return sop.decode(), path.decode("utf-8", "surrogateescape"), h.decode() or None

    def _candidates(self, sops: Sequence[str]) -> Iterator[tuple[int, int]]:
        """(index in ``sops``, spill offset) of every stored record whose key matches."""
        keys = sop_keys(sops)
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
