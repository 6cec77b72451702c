"""Scale-out of CT extraction on Dask: speed-up from 1 to N workers (target >= 1.7x for 2 workers).

A synthetic hospital (``synthetic.hospital.generate``) is written to a temporary folder; its axial CT
series (thin and thick) are extracted with ``tasks.biomarkers.extract.extract_ct_series`` as one Dask task
per series, first on a LocalCluster of 1 single-threaded worker process (the baseline, same run), then on
``--workers`` workers. Cluster start-up and worker imports are excluded (a warm-up task per worker runs
first); each configuration is timed ``--repeat`` times and the best is kept. With ``--dask-address`` the
second configuration is that existing cluster instead.

Ends with ``scaling: series=... workers=... t1_s=... tn_s=... speedup=... efficiency=...``.

Run: ``.venv/bin/python bench/scaling.py --patients 4 --workers 2``. The speed-up is bounded by the
machine's free cores (2 workers on 2 busy cores cannot reach 2x) and by the number and balance of series.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

AXIAL = ("ct_axial_thin", "ct_axial_thick")


def _extract(folder: str) -> int:
    from tasks.biomarkers.extract import extract_ct_series

    res = extract_ct_series(folder, with_qc=False)
    return len(res.vertebrae)


def _warm() -> int:
    import tasks.biomarkers.extract  # noqa: F401  (imports scipy/skimage/pydicom once per worker)

    return os.getpid()


def series_folders(root: Path, limit: int | None) -> list[str]:
    """Axial CT series folders of the synthetic hospital, largest first (better load balance)."""
    truth = pq.read_table(root / "truth" / "series.parquet").to_pylist()
    rows = sorted((r for r in truth if r["kind"] in AXIAL), key=lambda r: -int(r["n_files"] or 0))
    folders = [str(root / "archive" / r["folder"]) for r in rows]
    return folders[:limit] if limit else folders


def run(address: str, folders: list[str], n_workers: int, repeat: int) -> tuple[float, list[int]]:
    from distributed import Client

    with Client(address) as client:
        client.wait_for_workers(n_workers)
        client.run(_warm)
        best = float("inf")
        levels: list[int] = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            futures = client.map(_extract, folders, pure=False)
            levels = client.gather(futures)
            best = min(best, time.perf_counter() - t0)
    return best, levels


def timed_local(folders: list[str], n_workers: int, repeat: int) -> tuple[float, list[int]]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster:
        return run(cluster.scheduler_address, folders, n_workers, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--series", type=int, default=0, help="use at most this many series (0: all)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dask-address", default=None, help="measure an existing cluster instead")
    args = parser.parse_args()

    from synthetic.hospital import generate

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        generate(root, args.patients, args.seed)
        folders = series_folders(root, args.series or None)
        if not folders:
            raise SystemExit("no axial CT series generated; raise --patients")
        print(f"generated {args.patients} patients in {time.perf_counter() - t0:.1f} s; {len(folders)} axial CT "
              f"series; {os.cpu_count()} CPUs visible")
        t1, lv1 = timed_local(folders, 1, args.repeat)
        print(f"1 worker: {t1:.2f} s")
        if args.dask_address:
            tn, lvn = run(args.dask_address, folders, 1, args.repeat)
        else:
            tn, lvn = timed_local(folders, args.workers, args.repeat)
        print(f"{args.workers} workers: {tn:.2f} s")
        if lv1 != lvn:
            raise SystemExit(f"results differ between runs: {lv1} vs {lvn}")
        speedup = t1 / tn
        print(f"scaling: series={len(folders)} workers={args.workers} t1_s={t1:.2f} tn_s={tn:.2f} "
              f"speedup={speedup:.2f} efficiency={speedup / args.workers:.2f} target_2w=1.7")


if __name__ == "__main__":
    main()
