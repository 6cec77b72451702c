"""The lake: immutable Parquet files, snapshot manifests and the atomic publish.

Layout of a warehouse folder ``WH``::

    WH/data/<table>/<uuid>.parquet     data files, immutable once written
    WH/files/<relpath>                 other immutable files (QC PNGs, reports, model weights)
    WH/snapshots/<id>.json             one manifest per snapshot: the data files of every table
    WH/CURRENT                         the id of the current snapshot (replaced atomically)
    WH/osteolake.duckdb                the analysts' catalog of views over the current snapshot
    WH/runs/<table>/<ts>-<run>.parquet append-only run log (``dq_results``, ``run_summaries``)

Publishing writes the manifest, builds the new catalog in a temporary file, then ``os.replace``-s the
catalog and the ``CURRENT`` pointer. Writers serialise on an ``flock`` of ``WH/.lock``; readers take no lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import get_table
from schemas.core import Table

__all__ = ["Warehouse", "SnapshotInfo", "SnapshotBuilder", "record_run", "RUN_LOG_TABLES", "CATALOG_NAME"]

CATALOG_NAME = "osteolake.duckdb"
#: Tables served from the append-only run log rather than from snapshots.
RUN_LOG_TABLES = ("dq_results", "run_summaries")


def schema_fingerprint(schema: pa.Schema) -> str:
    """A short hash of a schema's field names, types and nullability (metadata ignored)."""
    text = ";".join(f"{f.name}:{f.type}:{f.nullable}" for f in schema)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _now() -> datetime:
    return datetime.now(UTC)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_parquet(root: Path, relpath: str, table: pa.Table) -> None:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd", row_group_size=1 << 20)
    os.replace(tmp, path)


@dataclass(frozen=True)
class SnapshotInfo:
    """One published snapshot.

    Attributes
    ----------
    id
        Sortable id (UTC time of publish plus a random suffix).
    created_at
        When it was published (UTC).
    run_id
        The run that built it.
    parent
        The snapshot it was built from (``None`` for the first).
    meta
        Whatever the publisher passed to :meth:`SnapshotBuilder.publish`.
    tables
        Row count per table.
    is_current
        Whether ``WH/CURRENT`` points at it (when it was read).
    """

    id: str
    created_at: datetime
    run_id: str
    parent: str | None
    meta: dict[str, Any]
    tables: dict[str, int]
    is_current: bool = False

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], current: str | None) -> SnapshotInfo:
        tables = {name: sum(int(f["rows"]) for f in t["files"]) for name, t in manifest["tables"].items()}
        return cls(
            id=manifest["id"],
            created_at=datetime.fromisoformat(manifest["created_at"]),
            run_id=manifest["run_id"],
            parent=manifest.get("parent"),
            meta=dict(manifest.get("meta") or {}),
            tables=tables,
            is_current=manifest["id"] == current,
        )


class Warehouse:
    """A lake folder: snapshots, reads, and the builder that makes the next snapshot.

    Parameters
    ----------
    root
        The warehouse folder (created on the first write).
    keep
        How many snapshots to keep (the current one is always kept as well); older manifests are removed
        and data files no kept snapshot references are deleted.

    Notes
    -----
    Opening a warehouse whose catalog was built at another path (the folder was moved or mounted
    elsewhere), or whose catalog does not match ``CURRENT`` (a crash between the two renames), rebuilds the
    catalog so that its views point at this folder's files.
    """

    def __init__(self, root: Path | str, keep: int = 10) -> None:
        if keep < 1:
            raise ValueError(f"keep={keep}: at least one snapshot must be kept")
        self.root = Path(root).expanduser().resolve()
        self.keep = keep
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
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
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
            paths = sorted((self.root / "runs" / table).glob("*.parquet"))
        else:
            paths = self.files(table, snapshot)
        return _read_files(decl, paths)

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
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run_id)
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
            had = {t: any((self.root / "runs" / t).glob("*.parquet")) for t in RUN_LOG_TABLES}
            if dq.num_rows:
                _write_parquet(self.root, f"runs/dq_results/{stamp}-{safe}.parquet", dq)
            _write_parquet(self.root, f"runs/run_summaries/{stamp}-{safe}.parquet", summ_tbl)
            has = {t: any((self.root / "runs" / t).glob("*.parquet")) for t in RUN_LOG_TABLES}
            # run-log views glob their folder: rebuild only when one goes from typed-empty to files
            if had != has or not self.catalog_path.exists():
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
        """Drop manifests beyond ``keep`` (never the current) and data files only they referenced."""
        snaps = self.snapshots()
        cid = self.current_id()
        kept = {s.id for s in snaps[-self.keep:]} | ({cid} if cid else set())
        dropped = [s.id for s in snaps if s.id not in kept]
        if not dropped:
            return []
        live: set[str] = set()
        for sid in kept:
            for t in self.manifest(sid)["tables"].values():
                live.update(f["path"] for f in t["files"])
        doomed: set[str] = set()
        for sid in dropped:
            for t in self.manifest(sid)["tables"].values():
                doomed.update(f["path"] for f in t["files"])
        for sid in dropped:
            self._manifest_path(sid).unlink(missing_ok=True)
        for rel in doomed - live:
            (self.root / rel).unlink(missing_ok=True)
        return dropped


def _count_failures(dq: pa.Table) -> int | None:
    if "success" in dq.column_names:
        col = dq.column("success").to_pylist()
        return sum(1 for v in col if v is False)
    return None


def _read_files(decl: Table, paths: list[Path]) -> pa.Table:
    if not paths:
        return decl.empty()
    parts = []
    for p in paths:
        t = pq.read_table(p)
        keep = [n for n in t.column_names if n in decl.column_names]
        parts.append(decl.conform(t.select(keep)))
    return pa.concat_tables(parts)


@dataclass
class _TableOps:
    replaced: bool = False
    files: list[dict[str, Any]] = field(default_factory=list)


class SnapshotBuilder:
    """Collects the changes of one run and publishes them as the next snapshot.

    Data files are written (immutably) as soon as :meth:`append` or :meth:`replace` is called; the
    snapshot becomes visible only at :meth:`publish`.

    Notes
    -----
    If another run published since :meth:`Warehouse.begin`, publish merges: tables this run replaced take
    this run's files, tables it appended to get its files added to the newer snapshot's, all other tables
    come from the newer snapshot. Appends are not de-duplicated by key here; callers append only rows that
    are new by content key.
    """

    def __init__(self, warehouse: Warehouse, run_id: str) -> None:
        if not run_id:
            raise ValueError("run_id must be a non-empty string")
        self.warehouse = warehouse
        self.run_id = run_id
        self.parent = warehouse.current_id()
        self._base = warehouse.manifest(self.parent)["tables"] if self.parent else {}
        self._ops: dict[str, _TableOps] = {}
        self._published: SnapshotInfo | None = None

    def _write(self, table: str, arrow: pa.Table) -> tuple[Table, list[dict[str, Any]]]:
        if self._published is not None:
            raise RuntimeError(f"run {self.run_id}: snapshot {self._published.id} already published")
        if table in RUN_LOG_TABLES:
            raise ValueError(f"table {table!r} is the run log; write it with Warehouse.record_run")
        decl = get_table(table)
        conformed = decl.conform(arrow)
        if conformed.num_rows == 0:
            return decl, []
        rel = f"data/{table}/{uuid.uuid4().hex}.parquet"
        _write_parquet(self.warehouse.root, rel, conformed)
        fp = schema_fingerprint(decl.arrow_schema())
        return decl, [{"path": rel, "rows": conformed.num_rows, "schema": fp, "run_id": self.run_id}]

    def append(self, table: str, arrow: pa.Table) -> None:
        """Add rows to ``table`` (conformed to its declaration first)."""
        _, files = self._write(table, arrow)
        self._ops.setdefault(table, _TableOps()).files.extend(files)

    def replace(self, table: str, arrow: pa.Table) -> None:
        """Replace all rows of ``table`` (an empty Arrow table empties it)."""
        _, files = self._write(table, arrow)
        self._ops[table] = _TableOps(replaced=True, files=files)

    def _files(self, table: str) -> list[dict[str, Any]]:
        ops = self._ops.get(table)
        base = [] if ops is not None and ops.replaced else list((self._base.get(table) or {"files": []})["files"])
        return base + (ops.files if ops else [])

    def read(self, table: str) -> pa.Table:
        """``table`` as this run sees it: the parent snapshot plus this run's changes."""
        decl = get_table(table)
        if table in RUN_LOG_TABLES:
            return self.warehouse.read(table)
        return _read_files(decl, [self.warehouse.root / f["path"] for f in self._files(table)])

    def put_file(self, relpath: str, data: bytes) -> Path:
        """Store an immutable file under ``WH/files/relpath`` and return its absolute path.

        Writing the same bytes again is a no-op; different bytes at an existing path are an error.
        Files are never pruned.
        """
        rel = Path(relpath)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"put_file relpath {relpath!r}: must be a relative path inside the warehouse")
        path = self.warehouse.root / "files" / rel
        if path.exists():
            if path.read_bytes() != data:
                raise ValueError(f"put_file {relpath!r}: {path} exists with different content (files are immutable)")
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, data)
        return path

    def publish(self, meta: Mapping[str, Any] | None = None) -> SnapshotInfo:
        """Write the manifest, switch the catalog and ``CURRENT`` atomically, then prune old snapshots."""
        if self._published is not None:
            raise RuntimeError(f"run {self.run_id}: snapshot {self._published.id} already published")
        wh = self.warehouse
        with wh._lock():
            cid = wh.current_id()
            if cid != self.parent:  # someone published meanwhile: merge onto theirs
                self._base = wh.manifest(cid)["tables"] if cid else {}
            names = set(self._base) | set(self._ops)
            tables = {}
            for name in sorted(names):
                files = self._files(name)
                files = self._migrate(name, files)
                tables[name] = {"files": files}
            ts = _now()
            sid = f"{ts.strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(3)}"
            manifest = {
                "id": sid,
                "parent": cid,
                "run_id": self.run_id,
                "created_at": ts.isoformat(),
                "meta": json.loads(json.dumps(dict(meta or {}), default=str)),
                "tables": tables,
            }
            (wh.root / "snapshots").mkdir(parents=True, exist_ok=True)
            _atomic_write(wh._manifest_path(sid), json.dumps(manifest, indent=1, sort_keys=True).encode())
            wh._switch(manifest)
            wh._prune()
        self._published = SnapshotInfo.from_manifest(manifest, sid)
        return self._published

    def _migrate(self, name: str, files: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rewrite files written under an older declaration of ``name`` so every file matches it now."""
        try:
            decl = get_table(name)
        except KeyError:
            return files  # no longer declared: kept in the manifest, no view
        fp = schema_fingerprint(decl.arrow_schema())
        out = []
        for f in files:
            if f.get("schema") == fp:
                out.append(f)
                continue
            old = pq.read_table(self.warehouse.root / f["path"])
            keep = [n for n in old.column_names if n in decl.column_names]
            new = decl.conform(old.select(keep))
            rel = f"data/{name}/{uuid.uuid4().hex}.parquet"
            _write_parquet(self.warehouse.root, rel, new)
            out.append({**f, "path": rel, "schema": fp})
        return out


def record_run(warehouse: Warehouse | Path | str, run_id: str, dq_results: pa.Table, summary: Mapping[str, Any]) -> None:
    """Module-level form of :meth:`Warehouse.record_run`."""
    wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    wh.record_run(run_id, dq_results, summary)
