"""The lake: immutable Parquet files, snapshot manifests and the atomic publish.

Layout of a warehouse folder ``WH``::

    WH/data/<table>/<uuid>.parquet     data files, immutable once written
    WH/files/<relpath>                 other immutable files (QC PNGs, reports, model weights)
    WH/snapshots/<id>.json             one manifest per snapshot: the data files of every table
    WH/CURRENT                         the id of the current snapshot (replaced atomically)
    WH/osteolake.duckdb                the analysts' catalog of views over the current snapshot
    WH/runs/<table>/<ts>-<run>.parquet append-only run log (``dq_results``, ``run_summaries``), folded
                                       into one file every few runs (:mod:`warehouse.runlog`)
    WH/pending/<token>.lease           files written by a run that has not published yet
                                       (:mod:`warehouse.retention`)

Publishing writes the manifest, builds the new catalog in a temporary file, then ``os.replace``-s the
catalog and the ``CURRENT`` pointer; it then compacts tables with many small files
(:mod:`warehouse.compaction`) and deletes every file (data files and ``put_file`` files alike) that no kept
snapshot references and no running builder still needs. Writers serialise on an ``flock`` of
``WH/.lock``; catalog readers take no lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

from schemas import get_table
from warehouse import compaction, retention, runlog
from warehouse.builder import SnapshotBuilder, SnapshotInfo
from warehouse.parquet_io import atomic_write as _atomic_write
from warehouse.parquet_io import now as _now
from warehouse.parquet_io import read_files as _read_files
from warehouse.parquet_io import schema_fingerprint
from warehouse.runlog import RUN_LOG_TABLES

__all__ = ["Warehouse", "SnapshotInfo", "SnapshotBuilder", "record_run", "RUN_LOG_TABLES", "CATALOG_NAME",
           "schema_fingerprint"]

CATALOG_NAME = "osteolake.duckdb"


class Warehouse:
    """A lake folder: snapshots, reads, and the builder that makes the next snapshot.

    Parameters
    ----------
    root
        The warehouse folder (created on the first write).
    keep
        How many snapshots to keep (the current one is always kept as well); older manifests are removed
        and files no kept snapshot references are deleted.
    compact_at
        At publish, a table with more than this many small files that no compaction wrote has its small
        files merged (:mod:`warehouse.compaction`).
    target_rows
        Files with fewer rows are small; merged files hold at most this many rows.
    run_log_compact_at
        The run log folder of a table is folded into one file once it holds more than this many files.

    Notes
    -----
    Opening a warehouse whose catalog was built at another path (the folder was moved or mounted
    elsewhere), or whose catalog does not match ``CURRENT`` (a crash between the two renames), rebuilds the
    catalog so that its views point at this folder's files.
    """

    def __init__(
        self,
        root: Path | str,
        keep: int = 10,
        *,
        compact_at: int = compaction.COMPACT_AT,
        target_rows: int = compaction.TARGET_ROWS,
        run_log_compact_at: int = runlog.COMPACT_AT,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep={keep}: at least one snapshot must be kept")
        for pname, value in (("compact_at", compact_at), ("target_rows", target_rows),
                             ("run_log_compact_at", run_log_compact_at)):
            if value < 1:
                raise ValueError(f"{pname}={value}: must be at least 1")
        self.root = Path(root).expanduser().resolve()
        self.keep = keep
        self.compact_at = compact_at
        self.target_rows = target_rows
        self.run_log_compact_at = run_log_compact_at
        if self.root.is_dir() and (self.root / "snapshots").is_dir():
            self._repair_catalog()

    # -- paths ---------------------------------------------------------------------------------------
    @property
    def catalog_path(self) -> Path:
        """``WH/osteolake.duckdb``."""
        return self.root / CATALOG_NAME

    def _manifest_path(self, snapshot_id: str) -> Path:
        return self.root / "snapshots" / f"{snapshot_id}.json"

    @contextmanager
    def _lock(self, shared: bool = False) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    # -- snapshots -----------------------------------------------------------------------------------
    def current_id(self) -> str | None:
        """The id in ``WH/CURRENT``, or ``None`` before the first publish."""
        try:
            text = (self.root / "CURRENT").read_text().strip()
        except FileNotFoundError:
            return None
        return text or None

    def manifest(self, snapshot_id: str) -> dict[str, Any]:
        """The manifest of ``snapshot_id`` (a :class:`KeyError` naming the known ids otherwise)."""
        path = self._manifest_path(snapshot_id)
        try:
            return dict(json.loads(path.read_text()))
        except FileNotFoundError:
            known = ", ".join(s.id for s in self.snapshots()) or "none"
            raise KeyError(f"snapshot {snapshot_id!r} not found in {self.root}; known: {known}") from None

    def current(self) -> SnapshotInfo | None:
        """The current snapshot, or ``None`` before the first publish."""
        cid = self.current_id()
        return None if cid is None else SnapshotInfo.from_manifest(self.manifest(cid), cid)

    def snapshots(self) -> list[SnapshotInfo]:
        """All kept snapshots, oldest first."""
        folder = self.root / "snapshots"
        if not folder.is_dir():
            return []
        cid = self.current_id()
        out = []
        for p in sorted(folder.glob("*.json")):
            try:
                out.append(SnapshotInfo.from_manifest(json.loads(p.read_text()), cid))
            except (OSError, ValueError, KeyError):
                continue  # a manifest removed by a concurrent prune, or not ours
        return sorted(out, key=lambda s: (s.created_at, s.id))

    def rollback(self, snapshot_id: str) -> SnapshotInfo:
        """Make an older snapshot current again (its catalog is rebuilt; nothing is deleted).

        The next :meth:`begin` starts from it.
        """
        with self._lock():
            manifest = self.manifest(snapshot_id)
            self._switch(manifest)
        return SnapshotInfo.from_manifest(manifest, snapshot_id)

    # -- reading -------------------------------------------------------------------------------------
    def files(self, table: str, snapshot: str | None = None) -> list[Path]:
        """Absolute paths of the data files of ``table`` in ``snapshot`` (default: current)."""
        sid = snapshot or self.current_id()
        if sid is None:
            return []
        entry = self.manifest(sid)["tables"].get(table)
        return [self.root / f["path"] for f in entry["files"]] if entry else []

    def read(self, table: str, snapshot: str | None = None) -> pa.Table:
        """Table ``table`` of ``snapshot`` (default: current) as Arrow, conformed to its declaration.

        A declared table that the snapshot does not hold comes back empty with the declared schema;
        ``dq_results`` and ``run_summaries`` come from the run log (all recorded runs).
        """
        decl = get_table(table)
        if table in RUN_LOG_TABLES:
            if not self.root.is_dir():
                return decl.empty()
            with self._lock(shared=True):  # never half-way through a fold
                return runlog.read(self.root, table)
        return _read_files(decl, self.files(table, snapshot))

    def put_files(self, snapshot: str | None = None) -> list[Path] | None:
        """Absolute paths of the ``put_file`` files ``snapshot`` (default: current) references.

        ``None`` for a snapshot published before ``put_file`` files were recorded in manifests.
        """
        sid = snapshot or self.current_id()
        if sid is None:
            return []
        rels = self.manifest(sid).get("files")
        return None if rels is None else [self.root / r for r in rels]

    # -- writing -------------------------------------------------------------------------------------
    def begin(self, run_id: str) -> SnapshotBuilder:
        """Start the next snapshot from the current one."""
        return SnapshotBuilder(self, run_id)

    def record_run(self, run_id: str, dq_results: pa.Table, summary: Mapping[str, Any]) -> None:
        """Append a run to the run log (also for runs whose publish was blocked).

        Parameters
        ----------
        run_id
            The run's id.
        dq_results
            Rows of the declared ``dq_results`` table (a missing ``run_id`` column is filled in).
        summary
            JSON-serialisable summary; ``status`` and ``is_published`` keys, when present, become columns
            of ``run_summaries``.
        """
        ts = _now()
        stamp = ts.strftime("%Y%m%dT%H%M%S%fZ")
        dq_decl = get_table("dq_results")
        if "run_id" in dq_decl.column_names and "run_id" not in dq_results.column_names:
            dq_results = dq_results.append_column("run_id", pa.array([run_id] * dq_results.num_rows, pa.string()))
        dq = dq_decl.conform(dq_results)
        with self._lock():
            sid = self.current_id()
            summ_row = {
                "run_id": run_id,
                "recorded_at": ts,
                "snapshot_id": summary.get("snapshot_id", sid),
                "status": summary.get("status"),
                "is_published": summary.get("is_published"),
                "n_dq_results": dq.num_rows,
                "n_dq_failures": _count_failures(dq),
                "summary_json": json.dumps(dict(summary), default=str, sort_keys=True),
            }
            summ = get_table("run_summaries")
            summ_tbl = summ.conform(pa.Table.from_pylist([summ_row]).select(
                [n for n in summ_row if n in summ.column_names]))
            if dq.num_rows:
                runlog.write(self.root, "dq_results", stamp, run_id, dq)
            runlog.write(self.root, "run_summaries", stamp, run_id, summ_tbl)
            for t in RUN_LOG_TABLES:
                runlog.compact(self.root, t, self.run_log_compact_at)
            # the catalog holds the run log as tables: refresh them in a copy, or rebuild it all
            if not runlog.refresh_catalog(self.root, self.catalog_path):
                self._switch(self.manifest(sid) if sid else None, write_current=False)

    # -- internals -----------------------------------------------------------------------------------
    def _switch(self, manifest: dict[str, Any] | None, write_current: bool = True) -> None:
        """Build the catalog for ``manifest`` in a temp file and atomically make it (and CURRENT) live."""
        from warehouse.catalog import build_catalog

        tmp = self.root / f".{CATALOG_NAME}.tmp-{uuid.uuid4().hex}"
        try:
            build_catalog(self.root, manifest, tmp)
            os.replace(tmp, self.catalog_path)
        finally:
            for p in (tmp, tmp.with_name(tmp.name + ".wal")):
                p.unlink(missing_ok=True)
        if write_current and manifest is not None:
            _atomic_write(self.root / "CURRENT", manifest["id"].encode())

    def _repair_catalog(self) -> None:
        from warehouse.catalog import catalog_state

        cid = self.current_id()
        state = catalog_state(self.catalog_path)
        if state == (str(self.root), cid):
            return
        with self._lock():
            cid = self.current_id()
            if catalog_state(self.catalog_path) != (str(self.root), cid):
                self._switch(self.manifest(cid) if cid else None, write_current=False)

    def _prune(self) -> list[str]:
        """Drop manifests beyond ``keep`` (never the current), then every file nothing kept references.

        Files named by a live builder's lease are kept (see :mod:`warehouse.retention`). ``put_file``
        files are collected only once every kept manifest records them (older manifests did not).
        """
        snaps = self.snapshots()
        cid = self.current_id()
        kept = {s.id for s in snaps[-self.keep:]} | ({cid} if cid else set())
        dropped = [s.id for s in snaps if s.id not in kept]
        candidates: set[str] = set()
        for sid in dropped:
            candidates.update(self.manifest(sid).get("files") or [])
            self._manifest_path(sid).unlink(missing_ok=True)
        referenced: set[str] = set()
        tracks_files = True
        for sid in kept:
            manifest = self.manifest(sid)
            for t in manifest["tables"].values():
                referenced.update(f["path"] for f in t["files"])
            if manifest.get("files") is None:
                tracks_files = False
            referenced.update(manifest.get("files") or [])
        retention.collect(self.root, referenced, candidates=candidates, include_files=tracks_files)
        return dropped

    def _referenced(self) -> set[str]:
        """Every path a kept manifest references (data files and ``put_file`` files)."""
        out: set[str] = set()
        for snap in self.snapshots():
            manifest = self.manifest(snap.id)
            for t in manifest["tables"].values():
                out.update(f["path"] for f in t["files"])
            out.update(manifest.get("files") or [])
        return out


def _count_failures(dq: pa.Table) -> int | None:
    if "success" in dq.column_names:
        col = dq.column("success").to_pylist()
        return sum(1 for v in col if v is False)
    return None


def record_run(warehouse: Warehouse | Path | str, run_id: str, dq_results: pa.Table, summary: Mapping[str, Any]) -> None:
    """Module-level form of :meth:`Warehouse.record_run`."""
    wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    wh.record_run(run_id, dq_results, summary)
