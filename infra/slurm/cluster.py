"""Start a Dask cluster on Slurm with dask-jobqueue and keep it up for osteolake.

Usage (on a login node, inside the project's environment)::

    python infra/slurm/cluster.py --workers 16            # prints tcp://<login-node>:<port>
    osteolake refresh --dask-address tcp://<login-node>:<port> ...

The worker job settings come from ``infra/slurm/jobqueue.yaml`` (partition, memory, walltime, prologue).
``--print-job-script`` shows the sbatch script without submitting anything.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def load_config(path: Path = HERE / "jobqueue.yaml") -> dict:  # type: ignore[type-arg]
    """The jobqueue configuration in ``path`` (a dict under ``jobqueue.slurm``)."""
    with path.open() as f:
        return yaml.safe_load(f)


def make_cluster(config_path: Path = HERE / "jobqueue.yaml"):  # type: ignore[no-untyped-def]
    """A ``dask_jobqueue.SLURMCluster`` configured from ``config_path`` (no jobs submitted yet)."""
    from dask_jobqueue import SLURMCluster

    slurm = load_config(config_path)["jobqueue"]["slurm"]
    # the YAML keys are SLURMCluster's keyword arguments with dashes (as in dask's own config files)
    return SLURMCluster(**{k.replace("-", "_"): v for k, v in slurm.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8, help="Slurm jobs (one worker each)")
    parser.add_argument("--adaptive-max", type=int, default=0, help="scale adaptively up to this many workers")
    parser.add_argument("--print-job-script", action="store_true", help="print the sbatch script and exit")
    args = parser.parse_args()
    cluster = make_cluster()
    if args.print_job_script:
        print(cluster.job_script())
        cluster.close()
        return
    if args.adaptive_max:
        cluster.adapt(minimum=1, maximum=args.adaptive_max)
    else:
        cluster.scale(jobs=args.workers)
    print(cluster.scheduler_address, flush=True)
    try:
        while True:
            time.sleep(60)
    except KeyboardInterrupt:
        cluster.close()


if __name__ == "__main__":
    main()
