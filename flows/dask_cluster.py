"""Where the Dask work runs: an existing cluster (``--dask-address``) or a LocalCluster for this run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

#: Settings of the LocalCluster this module starts: no statistical profiler in the workers (it samples
#: every worker's stack 100 times a second), a calmer event-loop watchdog and system monitor, and the
#: memory limits checked every second rather than ten times a second (each nanny's check, which runs in
#: this process, opens the worker's ``/proc`` entries with psutil): together they take the idle CPU of
#: this process from about 17 to 7 ms per second. The workers also start with Arrow's memory pool set
#: (:func:`tasks.arrow_pool.worker_environ`). A site's own cluster keeps its configuration.
LOCAL_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
}


@contextmanager
def dask_cluster(address: str | None, workers: int) -> Iterator[str]:
    """Yield a scheduler address.

    With ``address`` the existing cluster is used as it is (it is not closed afterwards); without it a
    ``LocalCluster`` of ``workers`` single-threaded worker processes (with :data:`LOCAL_CONFIG`) is started
    and closed on exit.
    """
    if address:
        yield address
        return
    import logging

    from distributed import LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)

    import dask

    from tasks.arrow_pool import worker_environ

    environ = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in worker_environ().items()}
    with dask.config.set(LOCAL_CONFIG | environ):  # the worker processes are given the config they start with
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()
