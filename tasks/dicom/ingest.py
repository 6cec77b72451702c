"""Pure batch functions of ingest: read and parse a batch of files, resolve duplicate instances.

:func:`index_batch` runs on a worker (one batch of listed files -> Arrow tables); :func:`resolve_batch`
runs in the driver, in path order, so the instance kept for a SOPInstanceUID is the same whatever the
number of workers or the batch boundaries: the first file by path within a run, the earlier run across runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from schemas import get_table
from tasks.dicom.header import SERIES_COLUMNS, SERIES_PART, HeaderError, QuarantineReason, parse_header
from tasks.dicom.sources import DicomSource, SourceFile

#: Columns the series/studies aggregation needs (kept in memory; ``dicom_json`` is not).
NARROW_COLUMNS: tuple[str, ...] = (
    "sop_instance_uid", "study_instance_uid", "series_instance_uid", "frame_of_reference_uid", "person_key",
    "age_at_study_years", "patient_sex", "modality", "study_date", "study_description", "series_number",
    "series_description", "protocol_name", "body_part_examined", "image_type", "view_position",
    "image_orientation_patient", "image_position_patient", "pixel_spacing_mm", "imager_pixel_spacing_mm",
    "slice_thickness_mm", "rows", "columns", "kvp", "contrast_bolus_agent", "convolution_kernel",
    "manufacturer", "manufacturer_model_name", "sop_class_uid",
)


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
    files the fast reader parsed.
    """

    parsed: pa.Table
    quarantined: pa.Table
    listed: list[SourceFile]
    fast: int = 0


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
        return decl.empty()
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


def _to_table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    decl = get_table(name)
    if not rows:
        return decl.empty()
    schema = pa.schema([f for f in decl.arrow_schema() if f.name in rows[0]])
    return decl.conform(pa.Table.from_pylist(rows, schema=schema))


@dataclass
class Resolved:
    """A batch after duplicate resolution: what to append, and the manifest rows of its files."""

    instances: pa.Table
    duplicates: pa.Table
    quarantine: pa.Table
    manifest: pa.Table


def resolve_batch(batch: BatchResult, known: dict[str, tuple[str, str]], run_id: str) -> Resolved:
    """Keep the first file of each SOPInstanceUID; record the others as duplicates.

    Parameters
    ----------
    batch
        Output of :func:`index_batch`.
    known
        SOPInstanceUID -> (path, content_hash) of instances already indexed; updated in place.
    run_id
        Written to the manifest, duplicates and quarantine rows.
    """
    p = batch.parsed
    sops = p.column("sop_instance_uid").to_pylist()
    paths = p.column("path").to_pylist()
    hashes = p.column("content_hash").to_pylist()
    keep: list[int] = []
    dups: list[dict[str, Any]] = []
    status: dict[str, tuple[str, str | None, str | None]] = {}
    for i, (sop, path, h) in enumerate(zip(sops, paths, hashes, strict=True)):
        first = known.get(sop)
        if first is None or first[0] == path:
            known[sop] = (path, h)
            keep.append(i)
            status[path] = ("indexed", h, sop)
        else:
            dups.append({"path": path, "sop_instance_uid": sop, "indexed_path": first[0], "content_hash": h,
                         "is_identical": first[1] == h, "run_id": run_id})
            status[path] = ("duplicate", h, sop)
    q = batch.quarantined
    for path, h in zip(q.column("path").to_pylist(), q.column("content_hash").to_pylist(), strict=True):
        status[path] = ("quarantined", h, None)
    mrows = []
    for sf in sorted(batch.listed, key=_path):
        st, h, sop = status[sf.path]
        mrows.append({"path": sf.path, "size_bytes": sf.size, "mtime": sf.mtime, "content_hash": h,
                      "status": st, "sop_instance_uid": sop, "run_id": run_id})
    q = q.set_column(q.schema.get_field_index("run_id"), "run_id", pa.array([run_id] * q.num_rows, pa.string()))
    return Resolved(
        instances=p.take(pa.array(keep, pa.int64())),
        duplicates=_to_table("duplicates", dups),
        quarantine=q,
        manifest=get_table("manifest").conform(pa.Table.from_pylist(mrows, schema=get_table("manifest").arrow_schema())),
    )
