"""Manifest diff: which listed files must be read in this run.

A file is read again only when it is new or its listed (size, mtime) changed. Sources that list no
stat (DICOMweb: instances are immutable by UID) count a path seen before as unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa

from tasks.dicom.sources import SourceFile


@dataclass
class ManifestDiff:
    """Outcome of :func:`diff_manifest`: files to read (sorted by path) and counts."""

    to_read: list[SourceFile] = field(default_factory=list)
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    changed_paths: set[str] = field(default_factory=set)

    @property
    def seen(self) -> int:
        return self.new + self.changed + self.unchanged


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
    prev: dict[str, tuple[int | None, float | None]] = {}
    if previous.num_rows:
        cols = previous.select(["path", "size_bytes", "mtime"]).to_pydict()
        prev = dict(zip(cols["path"], zip(cols["size_bytes"], cols["mtime"], strict=True), strict=True))
    out = ManifestDiff()
    listed: set[str] = set()
    for sf in listing:
        if sf.path in listed:
            continue
        listed.add(sf.path)
        old = prev.get(sf.path)
        if old is None:
            out.new += 1
            out.to_read.append(sf)
        elif old == (sf.size, sf.mtime):
            out.unchanged += 1
        else:
            out.changed += 1
            out.changed_paths.add(sf.path)
            out.to_read.append(sf)
    out.to_read.sort(key=lambda sf: sf.path)
    out.removed = sorted(set(prev) - listed)
    return out
