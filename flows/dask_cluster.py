"""Where the Dask work runs: an existing cluster (``--dask-address``) or a LocalCluster for this run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def dask_cluster(address: str | None, workers: int) -> Iterator[str]:
    """Yield a scheduler address.

    With ``address`` the existing cluster is used as it is (it is not closed afterwards); without it a
    ``LocalCluster`` of ``workers`` single-threaded worker processes is started and closed on exit.
    """
    if address:
        yield address
        return
    import logging

    from distributed import LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)

    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()
