"""Ingest benchmark: fast path vs a plain pydicom loop, 1 vs 2 Dask workers, peak memory at 20k and 60k files.

Usage::

    .venv/bin/python bench/ingest.py [--files 20000] [--big 60000] [--sample 4000] [--cache .bench]

The synthetic archives are generated once with ``synthetic.hospital.generate(..., small=True)`` and cached
under ``--cache``. Every ratio is measured in this run against a baseline measured in this run:

- ``ratio_per_core``: CPU seconds of ``pydicom.dcmread(path, stop_before_pixels=True)`` over a sample of
  files divided by CPU seconds of ``tasks.dicom.ingest.index_batch`` over the same files (read, hash,
  header parse, promoted columns, DICOM JSON, Arrow);
- ``scaling_1_to_2``: wall time of a whole ingest of both archives (``--files`` and ``--big``; the
  ``--files`` one alone with ``--scaling-small``) with a 1-worker LocalCluster divided by that with 2
  workers (processes, one thread each; each fresh cluster first runs a small ingest, as a long-lived one
  has; runs alternated, best of ``--repeat``), with the driver's share of the CPU time;
- ``peak_mb_20k`` / ``peak_mb_60k``: peak RSS of a fresh process that ingests ``--files`` / ``--big``
  files (in-process batches, not yet published); ``*_publish``: the same after the warehouse's publish.

The archives are read once before anything is timed (page cache), and the 1-minute load average is
printed at the start and the end (``load_start``, ``load_end``): the machine is shared, and a ratio
measured while other jobs hold the cores is not the code's. Ends with one line ``ingest: key=value ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KEY = b"bench-key-0123456789abcdef"
FILES_PER_PATIENT = 150  # conservative estimate for small=True; the generator is re-run if short


def _count(folder: Path) -> int:
    return sum(len(f) for _, _, f in os.walk(folder))


def archive(cache: Path, name: str, files: int, seed: int) -> Path:
    """A cached synthetic archive with at least ``files`` files."""
    from synthetic.hospital import generate

    out = cache / name
    arch = out / "archive"
    marker = out / "done.json"
    if marker.exists() and json.loads(marker.read_text())["files"] >= files:
        return arch
    patients = max(1, files // FILES_PER_PATIENT + 1)
    while True:
        if out.exists():
            import shutil

            shutil.rmtree(out)
        t = time.perf_counter()
        generate(out, patients, seed, small=True)
        n = _count(arch)
        print(f"generated {name}: {patients} patients, {n} files in {time.perf_counter() - t:.0f} s", flush=True)
        if n >= files:
            marker.write_text(json.dumps({"files": n, "patients": patients}))
            return arch
        patients = int(patients * files / max(n, 1)) + 2


def per_core(arch: Path, sample: int) -> dict[str, float]:
    import pydicom

    from tasks.dicom.header import reset_memos
    from tasks.dicom.ingest import index_batch
    from tasks.dicom.sources import FolderSource

    src = FolderSource(str(arch))
    listed = sorted(src.list_files(), key=lambda s: s.path)
    # Ten runs of consecutive files spread over the archive: the order an ingest reads them in.
    run = max(1, sample // 10)
    stride = max(run, len(listed) // 10)
    files = [f for i in range(0, len(listed), stride) for f in listed[i : i + run]][:sample]
    warm = files[:200]
    for f in warm:
        try:
            pydicom.dcmread(f.path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001, S112 - the baseline skips what it cannot read
            continue
    index_batch(src, warm, key=KEY)
    best_base = best_fast = float("inf")
    for _ in range(2):
        t = time.process_time()
        for f in files:
            try:
                pydicom.dcmread(f.path, stop_before_pixels=True)
            except Exception:  # noqa: BLE001, S112
                continue
        best_base = min(best_base, time.process_time() - t)
        reset_memos()  # each file is new to a real ingest: no memo carried over from the previous pass
        t = time.process_time()
        fast = 0
        for i in range(0, len(files), 256):
            fast += index_batch(src, files[i : i + 256], key=KEY).fast
        best_fast = min(best_fast, time.process_time() - t)
    return {"sample": len(files), "baseline_fps": len(files) / best_base, "fast_fps": len(files) / best_fast,
            "ratio_per_core": best_base / best_fast, "fast_share": fast / len(files)}


def _warm_up(address: str, workers: int, archive: Path) -> float:
    """One small ingest on a fresh cluster: every worker imports and runs the whole batch path (read,
    parse, stage and write its files), as the workers of a long-lived cluster serving the nightly refresh
    have long done. Its wall time is returned (the cold start), not counted in the scaling."""
    from flows.ingest_archive import run_ingest
    from warehouse.lake import Warehouse

    patients = sorted(p for p in (archive / "DICOM").iterdir() if p.is_dir())[:8]
    with tempfile.TemporaryDirectory() as wh:
        t = time.perf_counter()
        run_ingest(Warehouse(wh).begin("warm-up"), [str(p) for p in patients], KEY, dask_address=address,
                   workers=workers, batch_size=128)
        return time.perf_counter() - t


def scaling(archives: list[Path], repeat: int) -> dict[str, float]:
    """Wall time of a whole ingest on 1 and on 2 workers, runs alternated, the best of ``repeat`` each.

    Each run gets a fresh LocalCluster that has first run a small ingest (:func:`_warm_up`: a cluster
    serving the nightly refresh is long-lived, and a first task's imports and set-up are not throughput);
    the archive is in the page cache. The warm-up's wall time is printed with each run.
    """
    from distributed import Client

    from flows.dask_cluster import dask_cluster
    from flows.ingest_archive import run_ingest
    from warehouse.lake import Warehouse

    srcs = [str(a) for a in archives]
    out: dict[str, float] = {}
    best = {1: float("inf"), 2: float("inf")}
    for rep in range(repeat):
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as wh, dask_cluster(None, workers) as address, \
                    Client(address) as client:
                warm = _warm_up(address, workers, archives[0])
                w0 = sum(client.run(time.process_time).values())
                b = Warehouse(wh).begin(f"bench-{workers}")
                t, c = time.perf_counter(), time.process_time()
                res = run_ingest(b, srcs, KEY, dask_address=address, workers=workers)
                wall, driver = time.perf_counter() - t, time.process_time() - c
                work = sum(client.run(time.process_time).values()) - w0
            print(f"  run {rep + 1}, {workers} worker(s): {wall:.2f} s wall, driver {driver:.2f} s CPU, workers "
                  f"{work:.2f} s CPU, load {os.getloadavg()[0]:.2f} (warm-up ingest {warm:.2f} s)", flush=True)
            if wall < best[workers]:
                best[workers] = wall
                out[f"wall_s_{workers}w"] = wall
                out[f"fps_{workers}w"] = res["read"] / wall
                out[f"driver_cpu_share_{workers}w"] = driver / (driver + work)
    out["files_scaling"] = res["read"]
    out["scaling_1_to_2"] = out["wall_s_1w"] / out["wall_s_2w"]
    return out


def _warm_page_cache(*folders: Path) -> None:
    for folder in folders:
        for dirpath, _, names in os.walk(folder):
            for name in names:
                with open(os.path.join(dirpath, name), "rb") as f:
                    while f.read(1 << 20):
                        pass


def memory(sources: list[Path]) -> tuple[float, float]:
    """Peak RSS (MB) of a fresh process that ingests ``sources`` in-process: after the ingest (this
    package's work) and after the warehouse's publish (which compacts the instance files, forced at both
    sizes with ``compact_at=2``, and rebuilds the DuckDB catalog).

    The peak is ``VmHWM`` of ``/proc/self/status``: ``ru_maxrss`` keeps the parent's RSS at ``fork``
    across ``exec`` on Linux, so after the other parts of this bench it reported the bench's own size.
    """
    srcs = [str(s) for s in sources]
    code = (
        f"import sys, tempfile; sys.path.insert(0, {str(ROOT)!r})\n"
        "from flows.ingest_archive import run_ingest\n"
        "from warehouse.lake import Warehouse\n"
        "peak = lambda: int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024\n"
        "with tempfile.TemporaryDirectory() as wh:\n"
        "    b = Warehouse(wh, compact_at=2).begin('bench')\n"
        f"    r = run_ingest(b, {srcs!r}, {KEY!r})\n"
        "    p1 = peak()\n"
        "    b.publish({})\n"
        "print(r['read'], p1, peak())\n"
    )
    res = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True)
    read, p1, p2 = res.stdout.strip().splitlines()[-1].split()
    print(f"  ingested {read} files: peak RSS {float(p1):.0f} MB (ingest), {float(p2):.0f} MB (after publish)",
          flush=True)
    return float(p1), float(p2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--big", type=int, default=60_000)
    ap.add_argument("--sample", type=int, default=4000)
    ap.add_argument("--cache", type=Path, default=ROOT / ".bench")
    ap.add_argument("--prepare-only", action="store_true")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each worker count (best taken)")
    ap.add_argument("--scaling-small", action="store_true",
                    help="measure 1 -> 2 workers on the --files archive only (default: both archives)")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: core,scaling,memory")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    a = archive(args.cache, f"ingest-a-{args.files}", args.files, seed=11)
    b = archive(args.cache, f"ingest-b-{args.big - args.files}", args.big - args.files, seed=12) \
        if args.big > args.files else None
    if args.prepare_only:
        return
    n_a = _count(a)
    _warm_page_cache(*(p for p in (a, b) if p is not None))
    result: dict[str, float] = {"files": n_a, "cpus": os.cpu_count() or 0, "load_start": os.getloadavg()[0]}
    if "core" not in skip:
        result |= per_core(a, args.sample)
        print(f"per core: pydicom loop {result['baseline_fps']:.0f} files/s, fast path {result['fast_fps']:.0f} "
              f"files/s -> {result['ratio_per_core']:.2f}x", flush=True)
    if "scaling" not in skip:
        result |= scaling([a] if b is None or args.scaling_small else [a, b], args.repeat)
        print(f"dask: 1 worker {result['fps_1w']:.0f} files/s, 2 workers {result['fps_2w']:.0f} files/s -> "
              f"{result['scaling_1_to_2']:.2f}x", flush=True)
    if "memory" not in skip:
        result["peak_mb_20k"], result["peak_mb_20k_publish"] = memory([a])
        if b is not None:
            result["files_big"] = n_a + _count(b)
            result["peak_mb_60k"], result["peak_mb_60k_publish"] = memory([a, b])
    result["load_end"] = os.getloadavg()[0]
    print("ingest: " + " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
