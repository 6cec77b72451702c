"""The builder of the next snapshot: writes a run's files, then publishes them by an atomic switch.

See :mod:`warehouse.lake` for the layout; :class:`SnapshotBuilder` is made by
:meth:`warehouse.lake.Warehouse.begin`.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import get_table
from schemas.core import Table
from warehouse import compaction, retention
from warehouse.parquet_io import atomic_write as _atomic_write
from warehouse.parquet_io import now as _now
from warehouse.parquet_io import read_files as _read_files
from warehouse.parquet_io import schema_fingerprint
from warehouse.parquet_io import write_parquet as _write_parquet
from warehouse.runlog import RUN_LOG_TABLES

if TYPE_CHECKING:
    from warehouse.lake import Warehouse

__all__ = ["SnapshotBuilder", "SnapshotInfo", "write_staged"]


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


_STAGED_SCHEMA = b"osteolake.schema"  # Parquet key-value metadata: the declaration a staged file was written for


def write_staged(table: str, path: str | Path, arrow: pa.Table) -> int:
    """Write ``arrow`` (conformed to ``table``'s declaration) at a path from :meth:`SnapshotBuilder.stage`.

    Runs where the rows are (a Dask worker with the warehouse mounted at the same path); the write is
    atomic (a temporary name, then a rename), so the builder never adopts half a file. Returns the rows.
    """
    path = Path(path)
    decl = get_table(table)
    conformed = decl.conform(arrow)
    meta = dict(conformed.schema.metadata or {}) | {_STAGED_SCHEMA: schema_fingerprint(decl.arrow_schema()).encode()}
    _write_parquet(path.parent, path.name, conformed.replace_schema_metadata(meta))
    return conformed.num_rows


@dataclass
class _TableOps:
    replaced: bool = False
    files: list[dict[str, Any]] = field(default_factory=list)


class SnapshotBuilder:
    """Collects the changes of one run and publishes them as the next snapshot.

    Data files are written (immutably) as soon as :meth:`append` or :meth:`replace` is called; the
    snapshot becomes visible only at :meth:`publish`. Until then the run's files are named in its lease
    (``WH/pending/``), so no concurrent publish deletes them; :meth:`abort` deletes them at once.

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
        parent_manifest = warehouse.manifest(self.parent) if self.parent else {}
        self._base = parent_manifest.get("tables", {})
        self._ops: dict[str, _TableOps] = {}
        self._put: set[str] = set()       # put_file paths (relative to WH) this run references
        self._dropped: set[str] = set()   # put_file paths this run removes from the next snapshot
        self._staged: set[str] = set()    # stage() paths not yet adopted or discarded
        self._lease = retention.Lease(warehouse.root, run_id)
        self._published: SnapshotInfo | None = None
        self._aborted = False

    def _check_open(self) -> None:
        if self._published is not None:
            raise RuntimeError(f"run {self.run_id}: snapshot {self._published.id} already published")
        if self._aborted:
            raise RuntimeError(f"run {self.run_id}: aborted; begin a new run")

    def _write_rel(self, rel: str, table: pa.Table) -> None:
        self._lease.add(rel)  # before the file exists: see warehouse.retention
        _write_parquet(self.warehouse.root, rel, table)

    def _write(self, table: str, arrow: pa.Table) -> tuple[Table, list[dict[str, Any]]]:
        self._check_open()
        if table in RUN_LOG_TABLES:
            raise ValueError(f"table {table!r} is the run log; write it with Warehouse.record_run")
        decl = get_table(table)
        conformed = decl.conform(arrow)
        if conformed.num_rows == 0:
            return decl, []
        rel = f"data/{table}/{uuid.uuid4().hex}.parquet"
        self._write_rel(rel, conformed)
        fp = schema_fingerprint(decl.arrow_schema())
        return decl, [{"path": rel, "rows": conformed.num_rows, "schema": fp, "run_id": self.run_id}]

    def append(self, table: str, arrow: pa.Table) -> None:
        """Add rows to ``table`` (conformed to its declaration first)."""
        _, files = self._write(table, arrow)
        self._ops.setdefault(table, _TableOps()).files.extend(files)

    def stage(self, table: str) -> tuple[str, Path]:
        """Reserve a new data file of ``table`` that another process (a Dask worker) will write.

        The path is named in this run's lease before anything is written, so neither a concurrent publish
        nor the clean-up of an abandoned run deletes it while it is being written. The writer calls
        :func:`write_staged`; this run then calls :meth:`adopt` (the file joins the table's appended files)
        or :meth:`discard`. A staged file neither adopted nor discarded is deleted as garbage once the run
        publishes or aborts.

        Returns
        -------
        (str, Path)
            The path relative to the warehouse (for :meth:`adopt`) and the absolute path to write.
        """
        self._check_open()
        if table in RUN_LOG_TABLES:
            raise ValueError(f"table {table!r} is the run log; write it with Warehouse.record_run")
        get_table(table)  # a KeyError names an undeclared table
        rel = f"data/{table}/{uuid.uuid4().hex}.parquet"
        self._lease.add(rel)
        self._staged.add(rel)
        path = self.warehouse.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return rel, path

    def adopt(self, table: str, rel: str, rows: int | None = None) -> int:
        """Append the staged file ``rel`` (written by :func:`write_staged`) to ``table``; returns its rows.

        ``rows`` is what :func:`write_staged` returned for it: then the file's footer is not read again
        (its existence is still checked); without it the footer gives the rows and the declaration stamp
        is checked.

        Raises
        ------
        FileNotFoundError
            The file was not written.
        ValueError
            ``rel`` was not staged by this run, or its schema is not ``table``'s declaration.
        """
        self._check_open()
        if rel not in self._staged or not rel.startswith(f"data/{table}/"):
            raise ValueError(f"adopt {table!r}: {rel!r} was not staged by run {self.run_id} for this table")
        path = self.warehouse.root / rel
        fp = schema_fingerprint(get_table(table).arrow_schema())
        if rows is None:
            meta = pq.read_metadata(path)
            found = (meta.schema.to_arrow_schema().metadata or {}).get(_STAGED_SCHEMA, b"none").decode()
            if found != fp:
                raise ValueError(f"adopt {table!r}: {path} does not match the table's declaration "
                                 f"(schema {found}, declared {fp}); write it with write_staged")
            rows = meta.num_rows
        elif not path.is_file():
            raise FileNotFoundError(f"adopt {table!r}: staged file {path} was not written")
        self._staged.discard(rel)
        if rows:
            self._ops.setdefault(table, _TableOps()).files.append(
                {"path": rel, "rows": rows, "schema": fp, "run_id": self.run_id})
        else:
            path.unlink()
            self._ops.setdefault(table, _TableOps())
        return rows

    def discard(self, rel: str) -> None:
        """Delete a staged file this run will not adopt (it stays in the lease: deleting is idempotent)."""
        self._check_open()
        if rel not in self._staged:
            raise ValueError(f"discard: {rel!r} was not staged by run {self.run_id}")
        self._staged.discard(rel)
        (self.warehouse.root / rel).unlink(missing_ok=True)

    def replace(self, table: str, arrow: pa.Table) -> None:
        """Replace all rows of ``table`` (an empty Arrow table empties it)."""
        _, files = self._write(table, arrow)
        self._ops[table] = _TableOps(replaced=True, files=files)

    def changed_tables(self) -> list[str]:
        """Tables this run has appended to or replaced so far, in the order first written.

        A replace with zero rows counts (it empties the table); an append of zero rows counts too.
        """
        return list(self._ops)

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

    @staticmethod
    def _file_rel(relpath: str) -> str:
        rel = Path(relpath)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts or relpath.startswith("~"):
            raise ValueError(f"put_file relpath {relpath!r}: must be a relative path inside the warehouse")
        return (Path("files") / rel).as_posix()

    def put_file(self, relpath: str, data: bytes) -> Path:
        """Store an immutable file under ``WH/files/relpath`` and return its absolute path.

        Writing the same bytes again is a no-op; different bytes at an existing path are an error. The
        snapshot this run publishes references the file (and every file its parent referenced, less those
        passed to :meth:`drop_file`); a file no kept snapshot references is deleted by a later publish.
        """
        self._check_open()
        rel = self._file_rel(relpath)
        path = self.warehouse.root / rel
        self._lease.add(rel)  # also when it exists: an aborting run must not delete a file this run uses
        self._put.add(rel)
        self._dropped.discard(rel)
        if path.exists():
            if path.read_bytes() != data:
                raise ValueError(f"put_file {relpath!r}: {path} exists with different content (files are immutable)")
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, data)
        return path

    def drop_file(self, relpath: str) -> None:
        """Leave ``WH/files/relpath`` out of the snapshot this run publishes (deleted once no kept one has it)."""
        self._check_open()
        rel = self._file_rel(relpath)
        self._put.discard(rel)
        self._dropped.add(rel)

    def _put_files(self, base_manifest: Mapping[str, Any] | None) -> list[str]:
        if base_manifest is None:
            base: set[str] = set()
        elif base_manifest.get("files") is None:  # published before files were recorded: adopt all on disk
            folder = self.warehouse.root / "files"
            base = {p.relative_to(self.warehouse.root).as_posix() for p in folder.rglob("*")
                    if p.is_file() and not p.name.startswith(".")} if folder.is_dir() else set()
        else:
            base = set(base_manifest["files"])
        return sorted((base | self._put) - self._dropped)

    def publish(self, meta: Mapping[str, Any] | None = None) -> SnapshotInfo:
        """Write the manifest, switch the catalog and ``CURRENT`` atomically, then prune old snapshots.

        Before the manifest is written, files written under an older declaration are migrated and tables
        with many small files are compacted (:mod:`warehouse.compaction`).
        """
        self._check_open()
        wh = self.warehouse
        with wh._lock():
            cid = wh.current_id()
            base_manifest = wh.manifest(cid) if cid else None
            if cid != self.parent:  # someone published meanwhile: merge onto theirs
                self._base = base_manifest["tables"] if base_manifest else {}
            names = set(self._base) | set(self._ops)
            tables = {}
            for name in sorted(names):
                files = self._migrate(name, self._files(name))
                files = self._compact(name, files)
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
                "files": self._put_files(base_manifest),
            }
            (wh.root / "snapshots").mkdir(parents=True, exist_ok=True)
            _atomic_write(wh._manifest_path(sid), json.dumps(manifest, indent=1, sort_keys=True).encode())
            wh._switch(manifest)
            self._lease.release()  # the manifest references what this run needs; the rest is garbage
            wh._prune()
        self._published = SnapshotInfo.from_manifest(manifest, sid)
        return self._published

    def abort(self) -> list[Path]:
        """Give up this run: delete the files it wrote that no kept snapshot references, now.

        Safe while other runs write or publish: a file another run also uses (a ``put_file`` path both
        wrote, named in that run's lease) or that a kept snapshot references is kept. Calling it again is
        a no-op; the builder cannot be used afterwards. After :meth:`publish` it is an error.

        Returns
        -------
        list of Path
            The deleted files.
        """
        if self._published is not None:
            raise RuntimeError(f"run {self.run_id}: snapshot {self._published.id} already published; "
                               "use Warehouse.rollback to undo it")
        if self._aborted:
            return []
        self._aborted = True
        wh = self.warehouse
        if not self._lease.paths:
            self._lease.release()
            return []
        with wh._lock():
            self._lease.release()
            keep = wh._referenced() | retention.live_paths(wh.root, drop_stale=False)
            deleted = []
            for rel in dict.fromkeys(self._lease.paths):
                if rel in keep:
                    continue
                path = wh.root / rel
                if path.exists():
                    path.unlink()
                    deleted.append(path)
        return deleted

    def _compact(self, name: str, files: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            get_table(name)
        except KeyError:
            return files  # no longer declared: kept as it is
        wh = self.warehouse
        out = compaction.compact_files(wh.root, name, files, run_id=self.run_id, lease=self._lease.add,
                                       compact_at=wh.compact_at, target_rows=wh.target_rows)
        return files if out is None else out

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
            self._write_rel(rel, new)
            out.append({**f, "path": rel, "schema": fp})
        return out
