"""Arrow's memory pool for osteolake's processes: jemalloc, unless the site chose one.

pyarrow's default pool on Linux is mimalloc, which asks for transparent huge pages on its arena
(``madvise(MADV_HUGEPAGE)``) and hands memory back page by page between batches, so every batch of an
ingest faults in freshly zeroed 2 MiB pages; with two worker processes on two cores the kernel's page
zeroing (``clear_page_erms``) took about a fifth of the workers' CPU. Measured with ``bench/ingest.py``
(82k files, best of two, runs alternated, same machine and hour): mimalloc 8.3 s on one Dask worker and
5.6-6.3 s on two (1.43-1.47x, the workers' CPU rising from 8.0 to 9.7-11.0 s); jemalloc 7.5-7.7 s and
4.2-4.5 s (1.74-1.77x, the workers' CPU unchanged), and peak memory of an in-process ingest 194 MB
instead of 222 MB at 28k files, 211 MB instead of 233 MB at 82k.

:func:`use_arrow_pool` makes it the pool of pyarrow's calls in this process: called where the ingest's
work runs (each batch, so on a site's own Dask workers too) and by the command line. Arrow's C++ code that
takes no pool from Python (parts of the Parquet writer) keeps the pool ``ARROW_DEFAULT_MEMORY_POOL`` named
when the process first used one, so the LocalCluster this package starts gives its workers that variable
before they start (:func:`worker_environ`, :mod:`flows.dask_cluster`). A site that sets
``ARROW_DEFAULT_MEMORY_POOL`` keeps its choice. Buffers allocated before a switch stay with the pool that
allocated them, so switching mid-process is safe.
"""

from __future__ import annotations

import os

import pyarrow as pa

ENV = "ARROW_DEFAULT_MEMORY_POOL"
PREFERRED = ("jemalloc", "system")
_chosen: str | None = None


def preferred() -> str:
    """The first of :data:`PREFERRED` this pyarrow was built with (else its default)."""
    available = set(pa.supported_memory_backends())
    return next((name for name in PREFERRED if name in available), pa.default_memory_pool().backend_name)


def worker_environ() -> dict[str, str]:
    """Environment for a worker process started for this package: the preferred pool, unless chosen."""
    return {} if os.environ.get(ENV) else {ENV: preferred()}


def use_arrow_pool() -> str:
    """Make jemalloc (else the system allocator) Arrow's default pool in this process; return its name.

    Does nothing but report the current pool when ``ARROW_DEFAULT_MEMORY_POOL`` is set. Cheap after the
    first call.
    """
    global _chosen
    if _chosen is not None:
        return _chosen
    if os.environ.get(ENV):
        _chosen = pa.default_memory_pool().backend_name
        return _chosen
    name = preferred()
    if name in PREFERRED:
        pa.set_memory_pool(getattr(pa, f"{name}_memory_pool")())
    _chosen = pa.default_memory_pool().backend_name
    return _chosen
