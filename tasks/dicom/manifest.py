"""Manifest diff: which listed files must be read in this run.

A file is read again only when it is new or its listed (size, mtime) changed. Sources that list no
stat (DICOMweb: instances are immutable by UID) count a path seen before as unchanged.

:func:`iter_diff` streams: with a listing in path order (``source.lists_in_order``) it holds neither the
listing nor the files to read, only the previous manifest as Arrow columns; :func:`diff_manifest` is the
same diff collected into a :class:`ManifestDiff`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from tasks.dicom.sources import SourceFile

_CHUNK = 8192  # previous-manifest rows turned into Python objects at a time


@dataclass
class ManifestDiff:
    """Outcome of a diff: files to read (sorted by path; filled by :func:`diff_manifest` only) and counts."""

    to_read: list[SourceFile] = field(default_factory=list)
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    changed_paths: set[str] = field(default_factory=set)

    @property
    def seen(self) -> int:
        return self.new + self.changed + self.unchanged


def _previous(previous: pa.Table) -> Iterator[tuple[str, int | None, float | None]]:
    """(path, size, mtime) of the previous manifest in path order, a chunk at a time."""
    if previous.num_rows == 0:
        return
    t = previous.select(["path", "size_bytes", "mtime"])
    t = t.take(pc.sort_indices(t, sort_keys=[("path", "ascending")]))
    for start in range(0, t.num_rows, _CHUNK):
        part = t.slice(start, _CHUNK)
        yield from zip(*(part.column(c).to_pylist() for c in ("path", "size_bytes", "mtime")), strict=True)


def iter_diff(listing: Iterable[SourceFile], previous: pa.Table, out: ManifestDiff, *,
              in_order: bool = False) -> Iterator[SourceFile]:
    """Yield the files to read (new or changed) in path order; counts, changed and removed paths go to ``out``.

    Parameters
    ----------
    listing
        The files listed now (a path listed twice counts once).
    previous
        The ``manifest`` table (columns ``path``, ``size_bytes``, ``mtime`` at least); may be empty.
    out
        Filled as the listing is consumed; ``removed`` is complete when the generator is exhausted.
    in_order
        The listing is sorted by path already: it is streamed, not collected and sorted.

    Notes
    -----
    An unchanged stat is trusted: a file rewritten with the same size and mtime is not read again.
    """
    files = listing if in_order else sorted(listing, key=lambda sf: sf.path)
    prev = _previous(previous)
    nxt = next(prev, None)
    last: str | None = None
    for sf in files:
        path = sf.path
        if path == last:
            continue
        if last is not None and path < last:
            raise ValueError(f"listing not in path order at {path!r} (after {last!r})")
        last = path
        while nxt is not None and nxt[0] < path:
            out.removed.append(nxt[0])
            nxt = next(prev, None)
        if nxt is not None and nxt[0] == path:
            old = nxt
            nxt = next(prev, None)
            while nxt is not None and nxt[0] == path:  # a path twice in the manifest: the last row counts
                old, nxt = nxt, next(prev, None)
            if (old[1], old[2]) == (sf.size, sf.mtime):
                out.unchanged += 1
                continue
            out.changed += 1
            out.changed_paths.add(path)
        else:
            out.new += 1
        yield sf
    while nxt is not None:
        out.removed.append(nxt[0])
        nxt = next(prev, None)


def diff_manifest(listing: Iterable[SourceFile], previous: pa.Table) -> ManifestDiff:
    """Compare a source listing with the previous ``manifest`` table.

    Parameters
    ----------
    listing
        The files listed now.
    previous
        The ``manifest`` table (columns ``path``, ``size_bytes``, ``mtime`` at least); may be empty.

    Returns
    -------
    ManifestDiff
        ``to_read`` holds new and changed files sorted by path; ``removed`` the previous paths no longer listed.

    Notes
    -----
    An unchanged stat is trusted: a file rewritten with the same size and mtime is not read again.
    """
    out = ManifestDiff()
    out.to_read = list(iter_diff(listing, previous, out))
    out.removed = sorted(set(out.removed))
    return out
