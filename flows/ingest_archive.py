"""Ingest: index new and changed DICOM files of one or more archives into the bronze tables.

Reads the previous ``manifest`` (and ``instances`` when new instances must be aggregated) from the
warehouse, lists each source (folder/glob, fsspec URL, ``dicomweb+http(s)://``), reads only new or
changed files (batches fanned out on Dask, results consumed in path order), and writes ``instances``
(appended), ``duplicates``, ``quarantine``, ``manifest``, ``series`` and ``studies`` (replaced).

Settings: ``OSTEOLAKE_WAREHOUSE``, ``OSTEOLAKE_ARCHIVES``, ``OSTEOLAKE_DASK_ADDRESS``, ``OSTEOLAKE_WORKERS``,
``OSTEOLAKE_ISSUER``. Secret: the pseudonymisation key (``OSTEOLAKE_PSEUDONYM_KEY`` or ``_FILE``).

:func:`run_ingest` works on a snapshot builder (the nightly refresh calls it); :func:`ingest_archive_core`
opens the warehouse, runs it and publishes; :func:`ingest_archive` is the Prefect flow around that.
Nothing is published until the end, so a run killed part-way leaves the current snapshot untouched and
the re-run produces exactly the tables of a clean run.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tasks.dicom.ingest import NARROW_COLUMNS, BatchResult, index_batch, resolve_batch
from tasks.dicom.manifest import diff_manifest
from tasks.dicom.series import aggregate_series, aggregate_studies
from tasks.dicom.sources import DicomSource, SourceFile, open_source
from warehouse.lake import SnapshotBuilder, Warehouse

Progress = Callable[[int, int], None]
INSTANCE_FLUSH_ROWS = 2048  # instance rows (with their DICOM JSON, ~10 MB) held before a Parquet file is written
FLUSH_ROWS = 100_000  # manifest/quarantine/duplicates rows held before they are written (about 25 MB)


@dataclass
class IngestSummary:
    """What one ingest did (the CLI prints it; the nightly run log stores it)."""

    run_id: str
    seen: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    read: int = 0
    indexed: int = 0
    duplicates: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    fast_parsed: int = 0
    seconds: float = 0.0
    snapshot_id: str | None = None

    @property
    def files_per_second(self) -> float:
        return round(self.read / self.seconds, 1) if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"files_per_second": self.files_per_second,
                               "quarantined_total": sum(self.quarantined.values())}


def new_run_id() -> str:
    return "ingest-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def _batches(files: list[SourceFile], size: int) -> list[list[SourceFile]]:
    return [files[i : i + size] for i in range(0, len(files), size)]


def _index_batch(source: DicomSource, files: list[SourceFile], kw: dict[str, Any]) -> BatchResult:
    # ``key`` is also Dask's task-key argument of ``Client.submit``: pass the options as one dict.
    return index_batch(source, files, **kw)


def _results(
    source: DicomSource, batches: list[list[SourceFile]], kw: dict[str, Any], dask_address: str | None,
    workers: int,
) -> Iterator[BatchResult]:
    """Batch results in submission order; at most ``2 * workers`` batches in flight (bounded memory)."""
    if not dask_address:
        for b in batches:
            yield index_batch(source, b, **kw)
        return
    from distributed import Client

    with Client(dask_address) as client:
        n = max(1, len(client.scheduler_info().get("workers", {})) or workers)
        pending: deque[Any] = deque()
        it = iter(batches)
        for b in it:
            pending.append(client.submit(_index_batch, source, b, kw, pure=False))
            if len(pending) >= 2 * n:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _without_paths(table: pa.Table, paths: set[str]) -> pa.Table:
    if not paths or table.num_rows == 0:
        return table
    return table.filter(pc.invert(pc.is_in(table.column("path"), value_set=pa.array(sorted(paths), pa.string()))))


def run_ingest(
    builder: SnapshotBuilder,
    sources: Sequence[str | DicomSource] | str | DicomSource,
    key: bytes,
    *,
    dask_address: str | None = None,
    workers: int = 1,
    issuer: str | None = None,
    batch_size: int = 256,
    fast: bool = True,
    progress: Progress | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Index the new and changed files of ``sources`` into ``builder`` (not published).

    Parameters
    ----------
    builder
        The run's snapshot builder; previous tables are read from it.
    sources
        Source specs (see :func:`tasks.dicom.sources.open_source`) or source objects.
    key
        Pseudonymisation key.
    dask_address
        Scheduler of a Dask cluster to fan batches out on; ``None`` runs them in this process.
    workers
        Expected number of workers (only used to size the in-flight window).
    issuer
        IssuerOfPatientID to assume when a file has none.
    batch_size
        Files per batch.
    fast
        ``False`` parses with pydicom only (the reference).
    progress
        Called with (files done, files to read).
    on_batch
        Called with the batch number after each batch is staged (tests use it to simulate a crash).

    Returns
    -------
    dict
        :class:`IngestSummary` as a dict.
    """
    start = time.perf_counter()
    summary = IngestSummary(run_id=builder.run_id)
    srcs = [open_source(s) if isinstance(s, str) else s for s in
            ([sources] if isinstance(sources, str | DicomSource) else list(sources))]
    prev_manifest = builder.read("manifest")
    m = prev_manifest.to_pydict()
    known = {sop: (p, h) for p, h, sop, st in
             zip(m["path"], m["content_hash"], m["sop_instance_uid"], m["status"], strict=True) if st == "indexed"}
    reasons: Counter[str] = Counter()
    narrow: list[pa.Table] = []
    small: dict[str, list[pa.Table]] = {"manifest": [], "quarantine": [], "duplicates": []}
    pending_rows: list[pa.Table] = []
    reread: set[str] = set()
    changed: set[str] = set()
    dropped = False  # an indexed file changed: its old instance row was removed
    kw = {"key": key, "default_issuer": issuer, "fast": fast}
    for source in srcs:
        diff = diff_manifest(source.list_files(), prev_manifest)
        summary.seen += diff.seen
        summary.new += diff.new
        summary.changed += diff.changed
        summary.unchanged += diff.unchanged
        if not diff.to_read:
            continue
        reread |= {sf.path for sf in diff.to_read}
        changed |= diff.changed_paths
        if diff.changed_paths:  # a changed file that was indexed: drop its old instance row first
            old_sops = {sop for sop, (p, _) in known.items() if p in diff.changed_paths}
            changed_indexed = {known[s][0] for s in old_sops}
            for s in old_sops:
                del known[s]
            if changed_indexed:
                builder.replace("instances", _without_paths(builder.read("instances"), changed_indexed))
                dropped = True
        done = 0
        batches = _batches(diff.to_read, batch_size)
        for i, result in enumerate(_results(source, batches, kw, dask_address, workers)):
            res = resolve_batch(result, known, builder.run_id)
            pending_rows.append(res.instances)
            if sum(t.num_rows for t in pending_rows) >= INSTANCE_FLUSH_ROWS:
                builder.append("instances", pa.concat_tables(pending_rows))
                pending_rows = []
            narrow.append(res.instances.select(list(NARROW_COLUMNS)))
            # Buffered and written in large files; rows they supersede (changed files) are dropped at the end.
            for name, rows in (("manifest", res.manifest), ("quarantine", res.quarantine),
                               ("duplicates", res.duplicates)):
                small[name].append(rows)
                if sum(t.num_rows for t in small[name]) >= FLUSH_ROWS:
                    builder.append(name, pa.concat_tables(small.pop(name)))
                    small[name] = []
            for r in res.quarantine.column("reason").to_pylist():
                reasons[r] += 1
            summary.read += len(result.listed)
            summary.indexed += res.instances.num_rows
            summary.duplicates += res.duplicates.num_rows
            summary.fast_parsed += result.fast
            done += len(result.listed)
            if progress:
                progress(done, len(diff.to_read))
            if on_batch:
                on_batch(i)
    summary.quarantined = dict(sorted(reasons.items()))
    if pending_rows:
        builder.append("instances", pa.concat_tables(pending_rows))
    for name, parts in small.items():
        if parts:
            builder.append(name, pa.concat_tables(parts))
    if changed:  # the previous rows of re-read files are superseded by this run's
        for name in ("manifest", "quarantine", "duplicates"):
            table = builder.read(name)
            old = pc.and_(pc.is_in(table.column("path"), value_set=pa.array(sorted(changed), pa.string())),
                          pc.not_equal(table.column("run_id"), builder.run_id))
            builder.replace(name, table.filter(pc.fill_null(pc.invert(old), True)).sort_by("path"))
    if summary.indexed or dropped:
        # Series of new instances need every instance of the series. This run's rows are kept narrow in
        # memory; the parent snapshot's are read (whole, then narrowed: the lake API reads whole tables).
        parts = narrow
        if builder.parent is not None:
            old = builder.warehouse.read("instances", snapshot=builder.parent)
            old = _without_paths(old, reread).select(list(NARROW_COLUMNS))
            parts = [old, *narrow]
        allrows = pa.concat_tables(parts)
        series = aggregate_series(allrows)
        builder.replace("series", series)
        builder.replace("studies", aggregate_studies(series, allrows))
    summary.seconds = round(time.perf_counter() - start, 3)
    return summary.as_dict()


def ingest_archive_core(
    sources: Sequence[str | DicomSource] | str | DicomSource,
    warehouse: Warehouse | Path | str,
    key: bytes,
    *,
    workers: int = 1,
    dask_address: str | None = None,
    issuer: str | None = None,
    batch_size: int = 256,
    fast: bool = True,
    run_id: str | None = None,
    progress: Progress | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Ingest on its own: run :func:`run_ingest` and publish a snapshot if anything changed.

    With ``workers > 1`` and no ``dask_address`` a LocalCluster of single-threaded worker processes runs
    the batches; ``workers == 1`` runs them in this process.
    """
    wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    builder = wh.begin(run_id or new_run_id())
    args = {"issuer": issuer, "batch_size": batch_size, "fast": fast, "progress": progress, "on_batch": on_batch}
    if dask_address or workers > 1:
        from flows.dask_cluster import dask_cluster

        with dask_cluster(dask_address, workers) as address:
            out = run_ingest(builder, sources, key, dask_address=address, workers=workers, **args)  # type: ignore[arg-type]
    else:
        out = run_ingest(builder, sources, key, **args)  # type: ignore[arg-type]
    if out["read"]:
        info = builder.publish({"flow": "ingest_archive", "ingest": out})
        out["snapshot_id"] = info.id
    return out


def _ingest_archive(
    source: str, warehouse: str | None = None, workers: int | None = None, dask_address: str | None = None,
) -> dict[str, Any]:
    """Prefect flow: ingest ``source`` into ``warehouse`` with the site's settings and key."""
    from flows.settings import load_settings

    settings = load_settings(warehouse=warehouse, workers=workers, dask_address=dask_address)
    return ingest_archive_core(source, settings.warehouse, settings.key_bytes(), workers=settings.workers,
                               dask_address=settings.dask_address, issuer=settings.issuer)


def __getattr__(name: str) -> Any:
    """``ingest_archive`` (the Prefect flow) is built on first access: importing Prefect costs seconds
    that ``osteolake ingest`` and the unit tests do not need."""
    if name == "ingest_archive":
        from prefect import flow

        wrapped = flow(name="ingest-archive", log_prints=True)(_ingest_archive)
        globals()["ingest_archive"] = wrapped
        return wrapped
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
