"""Plan and run the biomarker extractors over the indexed series, fanned out on Dask.

Reads ``series``, ``instances`` and ``extraction_runs`` from the snapshot being built. Plans the series that
are eligible for an extractor (``is_eligible_*`` columns of ``series``) and have no run at the extractor's
current version, splits them into batches and runs one Prefect task per batch on the Dask task runner
(retries with backoff when a worker or the archive fails; a time limit per batch). One slow or failing series
never stops the others: each series' outcome, failures included, becomes an ``extraction_runs`` row.
Writes the extractors' tables (``vertebra_measurements``, ``body_composition``, ``vertebral_fractures``,
``hip_geometry``, ``texture``, ``image_crops``), ``extraction_runs`` and QC PNGs (``WH/files/qc/``).
Settings: archives (to open the files), dask address/workers, ``extract_timeout_s`` (per series).
"""

from __future__ import annotations

import io
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import polars as pl
import pyarrow as pa
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from flows.frames import read_frame
from schemas import get_table
from warehouse.lake import SnapshotBuilder

BATCH_SERIES = 4
IO_ATTEMPTS = 3


@dataclass(frozen=True)
class Extractor:
    name: str
    eligible: tuple[str, ...]  # series columns; any True makes a series eligible
    version: str
    one_per_study: bool = False  # only the best eligible series of each study (see _best_per_study)


def _best_per_study(series: pl.DataFrame) -> pl.DataFrame:
    """The one series per study that a CT extractor measures: thinnest slices with uniform spacing, then
    the widest z coverage, then the most instances (a thin and a thick reconstruction of the same
    acquisition hold the same anatomy; measuring both doubles the work for no new information)."""
    order = [c for c in ("is_spacing_uniform", "slice_thickness_mm", "z_coverage_mm", "n_instances")
             if c in series.columns]
    desc = {"is_spacing_uniform": True, "slice_thickness_mm": False, "z_coverage_mm": True, "n_instances": True}
    return (
        series.sort(order + ["series_instance_uid"], descending=[desc[c] for c in order] + [False],
                    nulls_last=True)
        .unique("study_instance_uid", keep="first", maintain_order=True)
    )


@dataclass(frozen=True)
class SeriesJob:
    series_instance_uid: str
    study_instance_uid: str | None
    extractor: str
    version: str
    paths: tuple[str, ...]


@dataclass
class BatchOutput:
    tables: dict[str, list[pa.Table]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)


def extractors() -> tuple[Extractor, ...]:
    """The registered extractors and their current versions."""
    from tasks.biomarkers import extract as ct
    from tasks.biomarkers import projection

    return (
        Extractor(ct.EXTRACTOR, ("is_eligible_ct_spine",), ct.EXTRACTOR_VERSION, one_per_study=True),
        Extractor(
            projection.EXTRACTOR,
            ("is_eligible_vertebral_fracture_dx", "is_eligible_dxa_hip", "is_eligible_dxa_spine"),
            projection.EXTRACTOR_VERSION,
        ),
    )


def plan(
    series: pl.DataFrame, instances: pl.DataFrame, runs: pl.DataFrame, registry: Sequence[Extractor]
) -> list[SeriesJob]:
    """Series eligible for each extractor and not yet run at its version (failed runs are not retried at
    the same version; a new version plans everything again)."""
    done = set()
    if runs.height:
        done = set(zip(runs["series_instance_uid"], runs["extractor"], runs["extractor_version"], strict=True))
    paths = (
        instances.select("series_instance_uid", "instance_number", "path")
        .sort("series_instance_uid", "instance_number", "path", nulls_last=True)
        .group_by("series_instance_uid", maintain_order=True)
        .agg(pl.col("path"))
    )
    by_series = dict(zip(paths["series_instance_uid"], paths["path"], strict=True))
    jobs: list[SeriesJob] = []
    for ex in registry:
        cols = [c for c in ex.eligible if c in series.columns]
        if not cols:
            continue
        chosen = series.filter(pl.any_horizontal([pl.col(c).fill_null(False) for c in cols]))
        if ex.one_per_study:
            chosen = _best_per_study(chosen)
        for row in chosen.select("series_instance_uid", "study_instance_uid").iter_rows():
            uid, study = row
            if (uid, ex.name, ex.version) in done or uid not in by_series:
                continue
            jobs.append(SeriesJob(uid, study, ex.name, ex.version, tuple(by_series[uid])))
    return jobs


def _run_one(job: SeriesJob, opener: Callable[[str], IO[bytes]] | None) -> tuple[Any, str | None]:
    from tasks.biomarkers import extract as ct
    from tasks.biomarkers.projection import extract_projection_series

    fn = ct.extract_ct_series if job.extractor == ct.EXTRACTOR else extract_projection_series
    last: Exception | None = None
    for attempt in range(IO_ATTEMPTS):
        try:
            return fn(list(job.paths), opener=opener), None
        except OSError as e:  # archive I/O: back off and try again
            last = e
            time.sleep(0.5 * 2**attempt)
    return None, f"I/O failed {IO_ATTEMPTS} times: {last}"


def _run_row(job: SeriesJob, status: str, seconds: float, error: str | None = None, **extra: Any) -> dict[str, Any]:
    row = {
        "series_instance_uid": job.series_instance_uid,
        "study_instance_uid": job.study_instance_uid,
        "extractor": job.extractor,
        "extractor_version": job.version,
        "status": status,
        "error": error,
        "seconds": round(seconds, 3),
    }
    row.update(extra)
    return row


def make_opener(sources: Sequence[str]) -> Callable[[str], IO[bytes]]:
    """An opener for indexed paths: a local file directly, anything else through the source that lists it."""
    from tasks.dicom.sources import open_source

    opened = [open_source(s) for s in sources]

    def _open(path: str) -> IO[bytes]:
        if "://" not in path:
            return open(path, "rb")
        for src in opened:
            prefix = src.spec.removeprefix("dicomweb+").rstrip("/")
            if path.removeprefix("dicomweb+").startswith(prefix):
                return io.BytesIO(src.read_bytes(path))
        raise OSError(f"{path}: not inside any configured archive ({', '.join(sources)})")

    return _open


def extract_batch_fn(jobs: Sequence[SeriesJob], sources: Sequence[str]) -> BatchOutput:
    """Run the extractor of every job; record each outcome (the plain function behind the Prefect task)."""
    from tasks.biomarkers.crops import crop_row, crops_table, l1_sagittal_crop
    opener = make_opener(sources)
    out = BatchOutput()
    crops: list[dict[str, Any]] = []
    for job in jobs:
        start = time.perf_counter()
        try:
            result, io_error = _run_one(job, opener)
            if result is None:
                out.runs.append(_run_row(job, "failed", time.perf_counter() - start, io_error))
                continue
            tables = result.tables()
            run_table = tables.pop("extraction_runs", None)
            for name, table in tables.items():
                out.tables.setdefault(name, []).append(table)
            if getattr(result, "qc_png", None):
                out.files[f"qc/{job.series_instance_uid}.png"] = result.qc_png
            volume, vertebrae = getattr(result, "volume", None), getattr(result, "vertebrae", None)
            if volume is not None and vertebrae:
                img = l1_sagittal_crop(volume, vertebrae)
                if img is not None:
                    crops.append(crop_row(job.series_instance_uid, img))
            if run_table is not None and run_table.num_rows:
                out.runs.extend(run_table.to_pylist())
            else:
                out.runs.append(_run_row(job, getattr(result, "status", "ok"), time.perf_counter() - start))
        except Exception as e:  # a bad series is recorded, never fatal to the batch
            msg = f"{type(e).__name__}: {e}"
            tb = traceback.format_exc(limit=3)
            out.runs.append(_run_row(job, "failed", time.perf_counter() - start, f"{msg}\n{tb}"[:2000]))
    if crops:
        out.tables.setdefault("image_crops", []).append(crops_table(crops))
    return out


extract_batch = task(
    name="extract_batch",
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    cache_policy=NO_CACHE,
)(extract_batch_fn)


def run_extract(
    builder: SnapshotBuilder, sources: Sequence[str], *, dask_address: str | None, timeout_s: float
) -> dict[str, Any]:
    """Plan, fan out on the Dask cluster at ``dask_address`` and append the results to ``builder``."""
    series = read_frame(builder, "series")
    instances = read_frame(builder, "instances")
    runs = read_frame(builder, "extraction_runs")
    registry = extractors()
    jobs = plan(series, instances, runs, registry)
    counts: dict[str, Any] = {"planned": len(jobs)}
    if not jobs:
        return counts | {"ok": 0, "failed": 0}
    batches = [jobs[i : i + BATCH_SERIES] for i in range(0, len(jobs), BATCH_SERIES)]
    outputs = _fan_out(batches, list(sources), dask_address, timeout_s)
    merged: dict[str, list[pa.Table]] = defaultdict(list)
    run_rows: list[dict[str, Any]] = []
    for batch, output in zip(batches, outputs, strict=True):
        if isinstance(output, BaseException):
            for job in batch:
                run_rows.append(_run_row(job, "failed", 0.0, f"batch failed after retries: {output}"[:2000]))
            continue
        for name, tables in output.tables.items():
            merged[name].extend(tables)
        for rel, data in output.files.items():
            builder.put_file(rel, data)
        run_rows.extend(output.runs)
    for name, tables in merged.items():
        builder.append(name, pa.concat_tables([get_table(name).conform(t) for t in tables]))
    builder.append("extraction_runs", get_table("extraction_runs").conform(pa.Table.from_pylist(run_rows)))
    statuses = pl.Series([r["status"] for r in run_rows]).value_counts()
    counts.update({str(s): int(n) for s, n in statuses.iter_rows()})
    return counts


def _fan_out(
    batches: list[list[SeriesJob]], sources: list[str], dask_address: str | None, timeout_s: float
) -> list[BatchOutput | BaseException]:
    from prefect_dask import DaskTaskRunner

    runner = DaskTaskRunner(address=dask_address) if dask_address else None
    options: dict[str, Any] = {"task_runner": runner} if runner is not None else {}

    @flow(name="extract_biomarkers", **options)
    def _extract_flow() -> list[BatchOutput | BaseException]:
        futures = [extract_batch.submit(b, sources) for b in batches]
        # Time limit per batch, counted from when the flow starts waiting for it: a batch still running then
        # is recorded as failed (its series are planned again at the next extractor version) and abandoned;
        # its worker is stopped when the cluster closes.
        results: list[BatchOutput | BaseException] = []
        for f, b in zip(futures, batches, strict=True):
            try:
                results.append(f.result(timeout=timeout_s * len(b)))
            except TimeoutError as e:
                results.append(TimeoutError(f"time limit of {timeout_s:.0f} s per series exceeded ({e})"))
            except BaseException as e:  # noqa: BLE001 - recorded per series by the caller
                results.append(e)
        return results

    return _extract_flow()

