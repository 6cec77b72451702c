"""Ingest: index new and changed DICOM files of one or more archives into the bronze tables.

Reads the previous ``manifest`` (and, after a run that indexed something, the previous ``instances`` of
the series it touched, and ``series``/``studies``) from the warehouse, lists each source (folder/glob,
fsspec URL, ``dicomweb+http(s)://``), reads only new or changed files (batches fanned out on Dask,
results consumed in path order), and writes ``instances`` (appended), ``duplicates``, ``quarantine``,
``manifest``, ``series`` and ``studies`` (replaced).

Where the work runs (:mod:`flows.ingest_batches`): a batch's worker reads, hashes and parses its files,
summarises them (series partials, manifest rows, duplicate-map records) and, on Dask, writes the batch's
instance rows into a data file the run staged for it; the driver resolves duplicates with a few array
operations per batch, merges the summaries, adopts the workers' files and appends the small tables. The driver's memory does not grow per
file beyond 16 bytes per indexed instance (see :func:`run_ingest`).

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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from flows.ingest_batches import Batch, BatchRunner, InOrder, all_new, file_batches, path_batches
from schemas import get_table
from tasks.arrow_pool import use_arrow_pool
from tasks.dicom.ingest import (
    NARROW_COLUMNS,
    KnownInstances,
    empty,
    resolve_batch,
    sop_keys,
    spill_records,
)
from tasks.dicom.manifest import ManifestDiff, iter_diff
from tasks.dicom.series import SeriesAccumulator, aggregate_studies, study_descriptions
from tasks.dicom.sources import DicomSource, FolderSource, SourceFile, open_source
from warehouse.lake import SnapshotBuilder, Warehouse
from warehouse.parquet_io import read_files

Progress = Callable[[int, int], None]
INSTANCE_FLUSH_ROWS = 4096  # instance rows (with their DICOM JSON, ~10 MB) held before a Parquet file is written
FLUSH_ROWS = 16_384  # manifest/quarantine/duplicates rows held before they are written (about 4 MB)
#: Default files per batch: in this process, and on Dask workers (where each batch costs the driver about
#: 5 ms, in the scheduler, the client and the merge, whatever its size; the last batches of a run shrink,
#: see :func:`flows.ingest_batches.batched`).
BATCH_LOCAL, BATCH_DASK = 256, 8192


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


def _without_paths(table: pa.Table, paths: set[str]) -> pa.Table:
    if not paths or table.num_rows == 0:
        return table
    return table.filter(pc.invert(pc.is_in(table.column("path"), value_set=pa.array(sorted(paths), pa.string()))))


def _previous_manifest(builder: SnapshotBuilder) -> pa.Table:
    if builder.parent is None and "manifest" not in builder.changed_tables():
        return empty("manifest")  # a first run: nothing to read (and no pandas import for an empty table)
    return builder.read("manifest")


class _Writer:
    """Buffers the run's rows and appends them to the builder in large files (bounded memory)."""

    def __init__(self, builder: SnapshotBuilder) -> None:
        self.builder = builder
        self.parts: dict[str, list[pa.Table]] = {"instances": [], "manifest": [], "quarantine": [],
                                                 "duplicates": []}
        self.rows = dict.fromkeys(self.parts, 0)

    def add(self, name: str, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self.parts[name].append(table)
        self.rows[name] += table.num_rows
        if self.rows[name] >= (INSTANCE_FLUSH_ROWS if name == "instances" else FLUSH_ROWS):
            self.flush(name)

    def flush(self, name: str | None = None) -> None:
        for n in [name] if name else list(self.parts):
            if self.parts[n]:
                self.builder.append(n, pa.concat_tables(self.parts[n]))
            self.parts[n] = []
            self.rows[n] = 0


def run_ingest(
    builder: SnapshotBuilder,
    sources: Sequence[str | DicomSource] | str | DicomSource,
    key: bytes,
    *,
    dask_address: str | None = None,
    workers: int = 1,
    issuer: str | None = None,
    batch_size: int | None = None,
    fast: bool = True,
    progress: Progress | None = None,
    on_batch: Callable[[int], None] | None = None,
    stage_on_workers: bool = True,
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
        Files per batch (default :data:`BATCH_LOCAL` in this process, :data:`BATCH_DASK` on Dask).
    fast
        ``False`` parses with pydicom only (the reference).
    progress
        Called with (files done, files to read so far).
    on_batch
        Called with the batch number after each batch is staged (tests use it to simulate a crash).
    stage_on_workers
        On Dask, each worker writes its batch's instance rows into the warehouse itself (the warehouse
        must be at the same path on the workers; a worker that cannot write there sends its rows back).

    Returns
    -------
    dict
        :class:`IngestSummary` as a dict.

    Notes
    -----
    The driver holds no per-file state that grows with the archive: a first run streams the listing
    (a source that lists in path order) into batches, duplicate detection keeps 16 bytes per indexed
    instance in memory (:class:`tasks.dicom.ingest.KnownInstances`), and series are summarised from
    per-batch partials computed where the batch ran. A later run re-summarises only the series (and
    studies) its files touch, reading the previous instances one data file at a time.
    """
    start = time.perf_counter()
    use_arrow_pool()
    summary = IngestSummary(run_id=builder.run_id)
    srcs = [open_source(s) if isinstance(s, str) else s for s in
            ([sources] if isinstance(sources, str | DicomSource) else list(sources))]
    size = batch_size or (BATCH_DASK if dask_address else BATCH_LOCAL)
    taper = max(1, workers) if dask_address else 0  # on Dask the last batches shrink
    prev_manifest = _previous_manifest(builder)
    incremental = builder.parent is not None
    reasons: Counter[str] = Counter()
    writer = _Writer(builder)
    acc = SeriesAccumulator(defer_positions=incremental)
    in_order = InOrder(acc)
    reread: set[str] = set()
    changed: set[str] = set()
    dropped_series: set[str] = set()
    kw = {"key": key, "default_issuer": issuer, "fast": fast}
    with KnownInstances() as known, BatchRunner(builder, dask_address, workers, stage_on_workers) as runner:
        if prev_manifest.num_rows:
            indexed = prev_manifest.filter(pc.equal(prev_manifest.column("status"), "indexed"))
            indexed = indexed.select(["sop_instance_uid", "path", "content_hash"])
            for start in range(0, indexed.num_rows, 65_536):  # a slice at a time as Python objects
                cols = indexed.slice(start, 65_536).to_pydict()
                sops = cols["sop_instance_uid"]
                known.add(sop_keys(sops), spill_records(sops, cols["path"], cols["content_hash"]))
        batch_no = 0
        for items, diffs in _stages(srcs, prev_manifest, size, taper, builder, known, reread, changed,
                                    dropped_series):
            done = 0
            for batch, result, rels in runner.results(items, kw):
                res = resolve_batch(result, known, builder.run_id)
                written, fix = runner.keep(result, rels, res.dropped, res.duplicates.column("path").to_pylist())
                if "instances" not in written:
                    writer.add("instances", res.instances)
                if "manifest" not in written:
                    writer.add("manifest", res.manifest)
                in_order.add(result, res, fix)
                # Buffered and written in large files; rows they supersede (changed files) are dropped at the end.
                writer.add("quarantine", res.quarantine)
                writer.add("duplicates", res.duplicates)
                reasons.update(res.quarantine.column("reason").to_pylist())
                summary.read += len(batch)
                summary.indexed += res.instances.num_rows
                summary.duplicates += res.duplicates.num_rows
                summary.fast_parsed += result.fast
                done += len(batch)
                if progress:
                    progress(done, sum(d.new + d.changed for d in diffs))  # files to read, as far as listed
                if on_batch:
                    on_batch(batch_no)
                batch_no += 1
            for d in diffs:
                summary.seen += d.seen
                summary.new += d.new
                summary.changed += d.changed
                summary.unchanged += d.unchanged
        in_order.close()
        runner.finish()
    summary.quarantined = dict(sorted(reasons.items()))
    writer.flush()
    if changed:  # the previous rows of re-read files are superseded by this run's
        for name in ("manifest", "quarantine", "duplicates"):
            table = builder.read(name)
            old = pc.and_(pc.is_in(table.column("path"), value_set=pa.array(sorted(changed), pa.string())),
                          pc.not_equal(table.column("run_id"), builder.run_id))
            builder.replace(name, table.filter(pc.fill_null(pc.invert(old), True)).sort_by("path"))
    if summary.indexed or dropped_series:
        if incremental:
            series, studies = _resummarise(builder, acc, reread, dropped_series)
        else:
            series = acc.series_table()
            studies = acc.studies_table(series)
        builder.replace("series", series)
        builder.replace("studies", studies)
    summary.seconds = round(time.perf_counter() - start, 3)
    return summary.as_dict()


Stage = tuple[Iterator[tuple[DicomSource, Batch]], list[ManifestDiff]]


def _stages(srcs: list[DicomSource], prev_manifest: pa.Table, size: int, taper: int, builder: SnapshotBuilder,
            known: KnownInstances, reread: set[str], changed: set[str], dropped_series: set[str],
            ) -> Iterator[Stage]:
    """The work of a run as stages of (source, batch) pairs, each with the listing counters it fills.

    A first run over local folders (which stream plain paths: no stat, no diff) is one stage: the batches
    of every folder follow each other without a pause (the workers start on the next folder while the
    last batches of the previous one finish; only the very end of the run tapers). Otherwise each source
    is a stage of its own, planned only when the previous one is done: a later run must know a source's
    changed files, and forget their instances, before any of its batches is resolved.
    """

    def folder(src: FolderSource, diff: ManifestDiff, taper: int) -> Iterator[tuple[DicomSource, Batch]]:
        # a first run reads every file: plain paths in order, no stat (size and mtime come from the open
        # file), no diff (every file is new)
        return ((src, b) for b in path_batches(all_new(src.iter_paths(), diff), size, taper))

    if not prev_manifest.num_rows and all(isinstance(src, FolderSource) for src in srcs):
        diffs = [ManifestDiff() for _ in srcs]
        folders = [src for src in srcs if isinstance(src, FolderSource)]

        last = len(folders) - 1
        yield chain.from_iterable(folder(src, diff, taper if n == last else 0)
                                  for n, (src, diff) in enumerate(zip(folders, diffs, strict=True))), diffs
        return
    for src in srcs:
        diff = ManifestDiff()
        if not prev_manifest.num_rows and isinstance(src, FolderSource):
            yield folder(src, diff, taper), [diff]
            continue
        listing = iter_diff(src.list_files(), prev_manifest, diff,
                            in_order=bool(getattr(src, "lists_in_order", False)))
        to_read: Iterable[SourceFile] = listing
        if prev_manifest.num_rows:  # changed files must be known before any batch is resolved
            to_read = list(listing)
            reread |= {sf.path for sf in to_read}
            changed |= diff.changed_paths
            dropped_series |= _drop_changed(builder, known, diff.changed_paths)
        yield ((src, b) for b in file_batches(to_read, size, taper)), [diff]


def _drop_changed(builder: SnapshotBuilder, known: KnownInstances, changed_paths: set[str]) -> set[str]:
    """Forget the instances of changed files (their new content is read again); returns their series."""
    if not changed_paths:
        return set()
    gone = known.drop_paths(changed_paths)
    if not gone:
        return set()
    inst = builder.read("instances")
    paths = set(gone.values())
    hit = pc.is_in(inst.column("path"), value_set=pa.array(sorted(paths), pa.string()))
    series = set(inst.filter(hit).column("series_instance_uid").to_pylist())
    builder.replace("instances", inst.filter(pc.invert(hit)))
    return series


def _resummarise(builder: SnapshotBuilder, new: SeriesAccumulator, reread: set[str],
                 dropped_series: set[str]) -> tuple[pa.Table, pa.Table]:
    """Series and studies after an incremental run: the series this run touched are summarised again
    from the previous instances (one data file at a time) followed by this run's; the others are kept."""
    affected = new.series_uids | dropped_series
    decl = get_table("instances")
    acc = SeriesAccumulator()
    old_desc: dict[str, Counter[str]] = {}
    for path in builder.warehouse.files("instances", snapshot=builder.parent):
        part = _without_paths(read_files(decl, [path]).select(list(NARROW_COLUMNS)), reread)
        acc.add_table(part.filter(pc.is_in(part.column("series_instance_uid"),
                                           value_set=pa.array(sorted(affected), pa.string()))).combine_chunks())
        for uid, c in study_descriptions(part).items():
            old_desc.setdefault(uid, Counter()).update(c)
    acc.merge(new)
    redone = acc.series_table()
    prev_series = builder.read("series")
    prev_hit = pc.is_in(prev_series.column("series_instance_uid"), value_set=pa.array(sorted(affected), pa.string()))
    series = pa.concat_tables([prev_series.filter(pc.invert(prev_hit)), redone.select(prev_series.column_names)])
    series = series.sort_by("series_instance_uid")
    touched = set(redone.column("study_instance_uid").to_pylist()) | set(
        prev_series.filter(prev_hit).column("study_instance_uid").to_pylist())
    desc = {uid: old_desc.get(uid, Counter()) + new.descriptions.get(uid, Counter()) for uid in touched}
    in_touched = pc.is_in(series.column("study_instance_uid"), value_set=pa.array(sorted(touched), pa.string()))
    redone_studies = aggregate_studies(series.filter(in_touched), descriptions=desc)
    prev_studies = builder.read("studies")
    keep = prev_studies.filter(pc.invert(pc.is_in(prev_studies.column("study_instance_uid"),
                                                  value_set=pa.array(sorted(touched), pa.string()))))
    studies = pa.concat_tables([keep, redone_studies.select(keep.column_names)]).sort_by("study_instance_uid")
    return series, studies


def ingest_archive_core(
    sources: Sequence[str | DicomSource] | str | DicomSource,
    warehouse: Warehouse | Path | str,
    key: bytes,
    *,
    workers: int = 1,
    dask_address: str | None = None,
    issuer: str | None = None,
    batch_size: int | None = None,
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
