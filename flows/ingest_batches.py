"""Where ingest batches run: in this process, or fanned out on a Dask cluster.

:class:`BatchRunner` takes batches of listed files and returns their parsed results in submission order
(at most ``2 * workers`` in flight, so memory is bounded). On Dask each worker also writes its batch's
instance rows (the DICOM JSON is most of the bytes) straight into a data file the run has staged for it
(:meth:`warehouse.builder.SnapshotBuilder.stage`), and its manifest rows into another, so the driver
neither receives nor encodes them and its share of the CPU stays small: that is what lets a second worker
nearly double the throughput. A batch with duplicate instances is rewritten by a worker too
(:func:`rewrite_instances`, which also re-summarises what the batch lost, and :func:`rewrite_manifest`), and
:class:`InOrder` merges the batches' series summaries in batch order as they become ready.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.dicom.ingest import (
    BatchResult,
    DroppedSummary,
    Resolved,
    drop_positions,
    index_batch,
    mark_duplicates,
    narrow_for_driver,
    summarise_batch,
    summarise_dropped,
    with_run_id,
)
from tasks.dicom.manifest import ManifestDiff
from tasks.dicom.series import SeriesAccumulator
from tasks.dicom.sources import DicomSource, SourceFile
from warehouse.builder import write_staged

if TYPE_CHECKING:
    from warehouse.lake import SnapshotBuilder

__all__ = ["Batch", "BatchRunner", "InOrder", "batched", "file_batches", "path_batches", "all_new", "STAGED_TABLES"]

T = TypeVar("T")

#: Tables whose batch files Dask workers write themselves (the bulk of what an ingest writes).
STAGED_TABLES = ("instances", "manifest")


class Batch:
    """Paths, sizes and mtimes of a batch: cheap to pickle, and one object that Dask does not walk
    (a plain list of 2,000 items is searched element by element for futures when a task is submitted)."""

    __slots__ = ("mtimes", "paths", "sizes")

    def __init__(self, paths: list[str], sizes: list[int | None] | None = None,
                 mtimes: list[float | None] | None = None) -> None:
        self.paths = paths
        # None: not listed (a first run's listing has no sizes or mtimes)
        self.sizes: list[int | None] | None = sizes
        self.mtimes: list[float | None] | None = mtimes

    def __getstate__(self) -> tuple[str, list[str], list[int | None] | None, list[float | None] | None]:
        # sent to a worker with every task: the paths' common prefix once (a third of the bytes)
        prefix = os.path.commonprefix([min(self.paths), max(self.paths)]) if self.paths else ""
        k = len(prefix)
        return prefix, [q[k:] for q in self.paths], self.sizes, self.mtimes

    def __setstate__(self, state: tuple[str, list[str], list[int | None] | None, list[float | None] | None]) -> None:
        prefix, rest, sizes, mtimes = state
        self.__init__([prefix + q for q in rest], sizes, mtimes)  # type: ignore[misc]

    @classmethod
    def of(cls, files: list[SourceFile]) -> Batch:
        return cls([f.path for f in files], [f.size for f in files], [f.mtime for f in files])

    def __len__(self) -> int:
        return len(self.paths)

    def files(self) -> list[SourceFile]:
        if self.sizes is None and self.mtimes is None:
            return [SourceFile(p) for p in self.paths]
        sizes = self.sizes if self.sizes is not None else [None] * len(self.paths)
        mtimes = self.mtimes if self.mtimes is not None else [None] * len(self.paths)
        return [SourceFile(p, s, m) for p, s, m in zip(self.paths, sizes, mtimes, strict=True)]


def batched(items: Iterable[T], size: int, taper: int = 0) -> Iterator[list[T]]:
    """``items`` in lists of ``size``; with ``taper`` (the number of workers), the last ``size`` to
    ``2 * size`` items in lists that shrink (a quarter, for two workers, of what is left each time,
    at least ``size // 8``), so that the workers run out of work at nearly the same time.

    Streams: at most ``2 * size`` items are held ahead.
    """
    it = iter(items)
    if taper <= 0:
        while chunk := list(islice(it, size)):
            yield chunk
        return
    buf = list(islice(it, 2 * size))
    while len(buf) >= 2 * size:  # not the end of the listing yet
        yield buf[:size]
        buf = buf[size:]
        buf.extend(islice(it, size))
    floor = max(1, size // 8)
    while buf:
        n = min(size, max(floor, -(-len(buf) // (2 * taper))))
        yield buf[:n]
        buf = buf[n:]


def file_batches(files: Iterable[SourceFile], size: int, taper: int = 0) -> Iterator[Batch]:
    """Listed files in batches of ``size`` (the last ones shrinking with ``taper``, see :func:`batched`)."""
    for batch in batched(files, size, taper):
        yield Batch.of(batch)


def all_new(paths: Iterable[str], diff: ManifestDiff) -> Iterator[str]:
    """Paths of a listing in order, each counted as new (a path listed twice counts once)."""
    last = None
    for p in paths:
        if p != last:
            diff.new += 1
            last = p
            yield p


def path_batches(paths: Iterable[str], size: int, taper: int = 0) -> Iterator[Batch]:
    """Plain paths (a first run's streamed listing) in batches of ``size`` (see :func:`batched`)."""
    for batch in batched(paths, size, taper):
        yield Batch(batch)


def index_one(source: DicomSource, batch: Batch, kw: dict[str, Any], stage: dict[str, str] | None = None,
              run_id: str | None = None) -> BatchResult:
    """One batch where it runs: parse, then summarise (series partials, manifest rows, duplicate-map
    records) so that the driver only merges. The listing is not sent back (the driver has it).

    With ``stage`` (table -> a path from :meth:`SnapshotBuilder.stage`, for ``instances`` and
    ``manifest``) the batch's instance rows and its manifest rows (stamped ``run_id``) are written there as
    Parquet, and of the instance rows only the columns the driver needs travel back. If the worker cannot
    write there (the warehouse is not mounted on the worker) the rows travel back as without it.
    """
    # ``key`` is also Dask's task-key argument of ``Client.submit``: pass the options as one dict.
    result = summarise_batch(index_batch(source, batch.files(), **kw))
    result.listed = []
    if not stage or run_id is None:
        return result
    try:
        if result.manifest is not None and "manifest" in stage:
            result.staged_rows["manifest"] = write_staged("manifest", stage["manifest"],
                                                          with_run_id(result.manifest, run_id))
            # written: the driver needs none of it (an empty table of its own: a slice would be pickled
            # with the whole buffers it views, half a megabyte a batch)
            result.manifest = pa.Table.from_batches([], schema=result.manifest.schema)
        if result.parsed.num_rows and "instances" in stage:
            result.staged_rows["instances"] = write_staged("instances", stage["instances"], result.parsed)
            narrow_for_driver(result)
    except OSError:
        return result
    return result


def rewrite_instances(src: str, dst: str, drop_rows: list[int]) -> tuple[int, DroppedSummary]:
    """Write staged instance file ``src`` again at ``dst`` less the rows at positions ``drop_rows``; with
    the rows written, what the batch's summaries lose with them (:func:`summarise_dropped`)."""
    rows = pq.read_table(src)
    kept = drop_positions(rows, drop_rows)
    return write_staged("instances", dst, kept), summarise_dropped(rows, kept, drop_rows)


def rewrite_manifest(src: str, dst: str, duplicate_paths: list[str]) -> int:
    """Write staged manifest file ``src`` again at ``dst`` with the status of ``duplicate_paths`` set to
    ``duplicate``."""
    return write_staged("manifest", dst, mark_duplicates(pq.read_table(src), duplicate_paths))


class InOrder:
    """Merges batches' series summaries into ``acc`` in batch order (partials merge in instance order),
    each as soon as it and every batch before it are ready: a batch that lost rows to duplicates waits
    for the worker that re-summarises it (a future of :func:`rewrite_instances`), those after it behind it.
    """

    def __init__(self, acc: SeriesAccumulator) -> None:
        self.acc = acc
        self._queue: deque[tuple[BatchResult, Resolved, Any]] = deque()

    def add(self, result: BatchResult, res: Resolved, fix: Any = None) -> None:
        """Queue a resolved batch (``fix``: the future from :meth:`BatchRunner.keep`, or ``None``)."""
        self._queue.append((result, res, fix))
        self._drain(wait=False)

    def close(self) -> None:
        """Merge every queued batch, waiting for the re-summaries still running."""
        self._drain(wait=True)

    def _drain(self, wait: bool) -> None:
        q = self._queue
        while q:
            result, res, fix = q[0]
            if fix is not None and not wait and not fix.done():
                return
            q.popleft()
            self.acc.add(*res.summaries(result, fix.result()[1] if fix is not None else None))


class BatchRunner:
    """Runs ingest batches in this process (``dask_address=None``) or on a Dask cluster.

    Parameters
    ----------
    builder
        The run's snapshot builder: worker-written instance files are staged in it and adopted.
    dask_address
        Scheduler address, or ``None`` to run in this process.
    workers
        Expected workers (sizes the in-flight window when the scheduler does not say).
    stage_on_workers
        On Dask, let each worker write its batch's instance rows into the warehouse (which must be at
        the same path there; a worker that cannot write sends its rows back instead).
    """

    def __init__(self, builder: SnapshotBuilder, dask_address: str | None, workers: int = 1,
                 stage_on_workers: bool = True) -> None:
        self.builder = builder
        self.dask_address = dask_address
        self.workers = workers
        self.stage_on_workers = stage_on_workers and dask_address is not None
        self._client: Any = None
        self._rewrites: list[tuple[Any, str, str, str]] = []

    def __enter__(self) -> BatchRunner:
        if self.dask_address:
            from distributed import Client

            self._client = Client(self.dask_address, direct_to_workers=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def results(self, items: Iterable[tuple[DicomSource, Batch]], kw: dict[str, Any],
                ) -> Iterator[tuple[Batch, BatchResult, dict[str, str]]]:
        """(batch, result, staged files by table) in submission order, for (source, batch) pairs.

        Pairs are taken from ``items`` lazily, so a streamed listing overlaps with the parsing.
        """
        client = self._client
        if client is None:
            for source, b in items:
                yield b, index_one(source, b, kw), {}
            return
        n = max(1, len(client.scheduler_info().get("workers", {})) or self.workers)
        pending: deque[tuple[Batch, Any, dict[str, str]]] = deque()
        for source, b in items:
            rels: dict[str, str] = {}
            paths: dict[str, str] = {}
            if self.stage_on_workers:
                for table in STAGED_TABLES:
                    rels[table], path = self.builder.stage(table)
                    paths[table] = str(path)
            fut = client.submit(index_one, source, b, kw, paths, self.builder.run_id, pure=False)
            pending.append((b, fut, rels))
            if len(pending) >= 2 * n:
                b0, fut0, rels0 = pending.popleft()
                yield b0, fut0.result(), rels0
        while pending:
            b0, fut0, rels0 = pending.popleft()
            yield b0, fut0.result(), rels0

    def keep(self, result: BatchResult, rels: dict[str, str], dropped: list[int],
             duplicate_paths: list[str]) -> tuple[set[str], Any]:
        """Adopt the files a batch's worker wrote: instances less the ``dropped`` rows, manifest with the
        ``duplicate_paths`` marked (such files are rewritten by a worker: collect with :meth:`finish`).

        Returns the tables handled (the caller writes the batch's rows of the others itself) and, where
        the instance file loses rows, the future of its rewrite (:func:`rewrite_instances`, for
        :class:`InOrder`), else ``None``.
        """
        done = set()
        fix = None
        for table, rel in rels.items():
            if table not in result.staged:
                self.builder.discard(rel)  # not written: the worker could not write there, or no rows
                continue
            done.add(table)
            change = dropped if table == "instances" else duplicate_paths
            if not change:
                self.builder.adopt(table, rel, rows=result.staged_rows.get(table))
                continue
            new_rel, new_path = self.builder.stage(table)
            rewrite = rewrite_instances if table == "instances" else rewrite_manifest
            fut = self._client.submit(rewrite, str(self.builder.warehouse.root / rel), str(new_path), change,
                                      pure=False, priority=1)  # before the queued batches
            if table == "instances":
                fix = fut
            self._rewrites.append((fut, table, rel, new_rel))
        return done, fix

    def finish(self) -> None:
        """Wait for the rewrites of batches with duplicates and adopt their files."""
        for fut, table, old, new in self._rewrites:
            if fut is not None:
                fut.result()
            self.builder.adopt(table, new)
            self.builder.discard(old)
        self._rewrites = []
