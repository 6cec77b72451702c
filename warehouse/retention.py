"""What may be deleted from a lake: run leases and the collection of files no kept snapshot references.

A :class:`~warehouse.lake.SnapshotBuilder` writes its data files (and ``put_file`` files) before any
snapshot references them. So that a concurrent publish does not take those files for garbage, each
builder holds a *lease*: ``WH/pending/<token>.lease``, a JSON header line (run id, host, pid, start time)
followed by one path per line, each line written (and flushed) *before* the file it names. The lease is
removed when the builder publishes or aborts.

:func:`collect` (run by every publish, under the warehouse's lock) deletes every file under ``WH/data``,
and every file under ``WH/files`` that a pruned manifest or a stale lease names, that no kept manifest
references and no live lease names. It lists the files *before*
reading the leases, so a file that exists when listed has its lease line already on disk.

A lease is live while its process runs (same host, pid alive), or, for a lease written on another host
(a lake on shared storage), until ``remote_grace_s`` after its last line. A crashed run's lease is
therefore stale at once on the same host and its files are collected by the next publish.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

__all__ = ["Lease", "live_paths", "collect", "REMOTE_GRACE_S"]

#: How long a lease written on another host protects its files after its last line (seconds).
REMOTE_GRACE_S = 72 * 3600.0
_LEASES = "pending"


class Lease:
    """The paths one builder wrote and no snapshot references yet (see the module docstring).

    Parameters
    ----------
    root
        The warehouse folder.
    run_id
        The builder's run (recorded in the header, for people reading the folder).
    """

    def __init__(self, root: Path, run_id: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self.path = root / _LEASES / f"{stamp}-{uuid.uuid4().hex[:8]}.lease"
        self.run_id = run_id
        self.paths: list[str] = []
        self._fh: IO[str] | None = None

    def add(self, relpath: str) -> None:
        """Record ``relpath`` (relative to the warehouse) before the file is written."""
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
            header = {"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(),
                      "started_at": datetime.now(UTC).isoformat()}
            self._fh.write(json.dumps(header) + "\n")
        self._fh.write(relpath + "\n")
        self._fh.flush()
        self.paths.append(relpath)

    def release(self) -> None:
        """Close and delete the lease (its files are then referenced by a snapshot, or deleted)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self.path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_paths(root: Path, remote_grace_s: float = REMOTE_GRACE_S, *, drop_stale: bool = True) -> set[str]:
    """Paths named by live leases; stale leases are deleted when ``drop_stale`` (caller holds the lock)."""
    return _leases(root, remote_grace_s, drop_stale)[0]


def _leases(root: Path, remote_grace_s: float, drop_stale: bool) -> tuple[set[str], set[str]]:
    """``(paths of live leases, paths of stale leases)``."""
    out: set[str] = set()
    stale: set[str] = set()
    host = socket.gethostname()
    for lease in sorted((root / _LEASES).glob("*.lease")):
        try:
            lines = lease.read_text(encoding="utf-8").splitlines()
            age = time.time() - lease.stat().st_mtime
        except FileNotFoundError:
            continue  # released meanwhile: its files are referenced now (or deleted)
        try:
            header = json.loads(lines[0]) if lines else {}
        except ValueError:
            header = {}
        if header.get("host") == host:
            live = _pid_alive(int(header.get("pid", -1)))
        else:
            live = age < remote_grace_s
        if live or not lines:  # an empty lease is being created right now
            out.update(line for line in lines[1:] if line)
        else:
            stale.update(line for line in lines[1:] if line)
            if drop_stale:
                lease.unlink(missing_ok=True)
    return out, stale


def _listed(root: Path, top: str) -> list[str]:  # only WH/data: see collect
    base = root / top
    if not base.is_dir():
        return []
    return [p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file()]


def collect(
    root: Path,
    referenced: set[str],
    *,
    candidates: set[str] | None = None,
    include_files: bool = True,
    remote_grace_s: float = REMOTE_GRACE_S,
    tmp_grace_s: float = 3600.0,
) -> list[str]:
    """Delete lake files that no kept snapshot references and no live lease names.

    Every file under ``WH/data`` is considered (one file per table and run: cheap to list). ``WH/files``
    can hold a file per series (QC images), so it is not listed: the files considered there are
    ``candidates`` (those of the manifests just pruned) and the paths of stale leases.

    Parameters
    ----------
    root
        The warehouse folder (the caller holds its exclusive lock).
    referenced
        Relative paths referenced by the kept manifests (data files and ``put_file`` files).
    candidates
        Paths under ``WH/files`` that the pruned manifests referenced.
    include_files
        Also collect under ``WH/files`` (off while a kept manifest predates ``put_file`` tracking).
    remote_grace_s
        See :func:`live_paths`.
    tmp_grace_s
        Half-written temporary files (``.name.tmp-*``) are deleted once this old.

    Returns
    -------
    list of str
        The deleted paths, relative to ``root``.
    """
    listed = _listed(root, "data")
    live, stale = _leases(root, remote_grace_s, drop_stale=True)  # read after listing: see the docstring
    if include_files:
        listed += sorted(p for p in (set(candidates or ()) | stale) if p.startswith("files/"))
    now = time.time()
    deleted = []
    for rel in listed:
        if rel in referenced or rel in live:
            continue
        path = root / rel
        if path.name.startswith("."):
            try:
                if now - path.stat().st_mtime < tmp_grace_s:
                    continue
            except FileNotFoundError:
                continue
        path.unlink(missing_ok=True)
        deleted.append(rel)
    # drop folders under WH/files emptied above (QC folders per series), never one a live lease writes into
    keep_dirs = {(root / rel).parent for rel in live}
    base = root / "files"
    for d in sorted({(root / rel).parent for rel in deleted if rel.startswith("files/")},
                    key=lambda p: len(p.parts), reverse=True):
        while d != base and d.is_relative_to(base):
            if d in keep_dirs or any(k.is_relative_to(d) for k in keep_dirs):
                break
            try:
                d.rmdir()
            except OSError:
                break
            d = d.parent
    return deleted
