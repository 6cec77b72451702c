"""Where ingest batches run: in this process, or fanned out on a Dask cluster.

:class:`BatchRunner` takes batches of listed files and returns their parsed results in submission order
(at most ``2 * workers`` in flight, so memory is bounded). On Dask each worker also writes its batch's
instance rows (the DICOM JSON is most of the bytes) straight into a data file the run has staged for it
(:meth:`warehouse.builder.SnapshotBuilder.stage`), so the driver neither receives nor encodes them and
its share of the CPU stays small: that is what lets a second worker nearly double the throughput. The
rare batch with duplicate instances to leave out is rewritten by a worker too (:meth:`BatchRunner.rewrite`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.dicom.ingest import BatchResult, index_batch, narrow_for_driver, summarise_batch
from tasks.dicom.manifest import ManifestDiff
from tasks.dicom.sources import DicomSource, SourceFile
from warehouse.builder import write_staged

if TYPE_CHECKING:
    from warehouse.lake import SnapshotBuilder

__all__ = ["Batch", "BatchRunner", "file_batches", "path_batches", "all_new"]


class Batch:
    """Paths, sizes and mtimes of a batch: cheap to pickle, and one object that Dask does not walk
    (a plain list of 2,000 items is searched element by element for futures when a task is submitted)."""

    __slots__ = ("mtimes", "paths", "sizes")

    def __init__(self, paths: list[str], sizes: list[int | None] | None = None,
                 mtimes: list[float | None] | None = None) -> None:
        self.paths = paths
        self.sizes = sizes if sizes is not None else [None] * len(paths)
        self.mtimes = mtimes if mtimes is not None else [None] * len(paths)

    @classmethod
    def of(cls, files: list[SourceFile]) -> Batch:
        return cls([f.path for f in files], [f.size for f in files], [f.mtime for f in files])

    def __len__(self) -> int:
        return len(self.paths)

    def files(self) -> list[SourceFile]:
        return [SourceFile(p, s, m) for p, s, m in zip(self.paths, self.sizes, self.mtimes, strict=True)]


def file_batches(files: Iterable[SourceFile], size: int) -> Iterator[Batch]:
    """Listed files in batches of ``size``."""
    it = iter(files)
    while batch := list(islice(it, size)):
        yield Batch.of(batch)


def all_new(paths: Iterable[str], diff: ManifestDiff) -> Iterator[str]:
    """Paths of a listing in order, each counted as new (a path listed twice counts once)."""
    last = None
    for p in paths:
        if p != last:
            diff.new += 1
            last = p
            yield p


def path_batches(paths: Iterable[str], size: int) -> Iterator[Batch]:
    """Plain paths (a first run's streamed listing) in batches of ``size``."""
    it = iter(paths)
    while batch := list(islice(it, size)):
        yield Batch(batch)


def index_one(source: DicomSource, batch: Batch, kw: dict[str, Any], stage_path: str | None = None) -> BatchResult:
    """One batch where it runs: parse, then summarise (series partials, manifest rows, duplicate-map
    records) so that the driver only merges. The listing is not sent back (the driver has it).

    With ``stage_path`` (a path from :meth:`SnapshotBuilder.stage`) the batch's instance rows are written
    there as Parquet and only the columns the driver needs travel back; if the worker cannot write there
    (the warehouse is not mounted on the worker) the whole rows travel back as without it.
    """
    # ``key`` is also Dask's task-key argument of ``Client.submit``: pass the options as one dict.
    result = summarise_batch(index_batch(source, batch.files(), **kw))
    result.listed = []
    if stage_path is not None and result.parsed.num_rows:
        try:
            write_staged("instances", stage_path, result.parsed)
        except OSError:
            return result
        narrow_for_driver(result)
    return result


def without_rows(src: str, dst: str, dropped: list[int]) -> int:
    """Write the rows of instance file ``src`` less the positions ``dropped`` to ``dst``; returns the rows."""
    table = pq.read_table(src)
    keep = np.ones(table.num_rows, bool)
    keep[dropped] = False
    return write_staged("instances", dst, table.filter(pa.array(keep)))


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
        self._rewrites: list[tuple[Any, str, str]] = []

    def __enter__(self) -> BatchRunner:
        if self.dask_address:
            from distributed import Client

            self._client = Client(self.dask_address, direct_to_workers=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def results(self, source: DicomSource, batches: Iterator[Batch], kw: dict[str, Any],
                ) -> Iterator[tuple[Batch, BatchResult, str | None]]:
        """(batch, result, staged file or ``None``) in submission order.

        Batches are taken from ``batches`` lazily, so a streamed listing overlaps with the parsing.
        """
        client = self._client
        if client is None:
            for b in batches:
                yield b, index_one(source, b, kw), None
            return
        n = max(1, len(client.scheduler_info().get("workers", {})) or self.workers)
        pending: deque[tuple[Batch, Any, str | None]] = deque()
        for b in batches:
            rel, path = self.builder.stage("instances") if self.stage_on_workers else (None, None)
            fut = client.submit(index_one, source, b, kw, None if path is None else str(path), pure=False)
            pending.append((b, fut, rel))
            if len(pending) >= 2 * n:
                b0, fut0, rel0 = pending.popleft()
                yield b0, fut0.result(), rel0
        while pending:
            b0, fut0, rel0 = pending.popleft()
            yield b0, fut0.result(), rel0

    def keep(self, result: BatchResult, rel: str | None, dropped: list[int]) -> bool:
        """Adopt a batch's worker-written instance file, less its ``dropped`` rows (rewritten by a worker:
        collect with :meth:`finish`). Returns ``False`` when the batch's rows came back to the driver
        (not staged) and the caller must write them."""
        if rel is None:
            return False
        if not result.staged:
            self.builder.discard(rel)  # not written: the worker could not write there, or no rows
            return False
        if not dropped:
            self.builder.adopt("instances", rel)
            return True
        new_rel, new_path = self.builder.stage("instances")
        src = str(self.builder.warehouse.root / rel)
        if self._client is not None:
            fut = self._client.submit(without_rows, src, str(new_path), dropped, pure=False)
        else:
            without_rows(src, str(new_path), dropped)
            fut = None
        self._rewrites.append((fut, rel, new_rel))
        return True

    def finish(self) -> None:
        """Wait for the rewrites of batches with duplicates and adopt their files."""
        for fut, old, new in self._rewrites:
            if fut is not None:
                fut.result()
            self.builder.adopt("instances", new)
            self.builder.discard(old)
        self._rewrites = []

