"""The nightly refresh: archive and clinical record in, a validated, published warehouse snapshot out.

Stages, in order (each one idempotent; a killed run leaves the current snapshot untouched, and a re-run
rebuilds the same warehouse because bronze/silver append by content key and gold is rebuilt):

1. ingest   — index new/changed DICOM files (``flows.ingest_archive``): instances, series, studies, quarantine
2. plan     — series eligible for each extractor and not yet done at its version
3. extract  — Dask fan-out over batches of series (``flows.extract_biomarkers``): biomarker tables, QC PNGs
4. clinical — OMOP CDM (folder or PostgreSQL) -> persons, fracture events, risk factors (``flows.clinical_cohort``)
5. cohort   — index date, follow-up, outcomes, features at index, attrition
6. models   — fit, validate, gate, register, score; model cards (``flows.fit_models``)
7. quality  — expectation suites + domain rules + OMOP checks (``flows.quality``); a critical failure blocks 8
8. publish  — atomic snapshot switch; ``WH/osteolake.duckdb`` rebuilt; run summary + DQ report recorded

Reads the settings in :mod:`flows.settings` (warehouse, archives, omop, dask address/workers, horizon) and
the pseudonymisation key (``OSTEOLAKE_PSEUDONYM_KEY`` or ``OSTEOLAKE_PSEUDONYM_KEY_FILE``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.settings import Settings, load_settings


@dataclass
class RunSummary:
    """What a refresh did: counts and seconds per stage, verdict, where the report is."""

    run_id: str
    started_at: datetime
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    published_snapshot: str | None = None
    blocked_by: list[str] = field(default_factory=list)
    report_path: str | None = None
    model_cards: list[str] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        counts: dict[str, Any] = {}
        start = time.perf_counter()
        try:
            yield counts
        finally:
            counts["seconds"] = round(time.perf_counter() - start, 2)
            self.stages[name] = counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "stages": self.stages,
            "published_snapshot": self.published_snapshot,
            "blocked_by": self.blocked_by,
            "report_path": self.report_path,
            "model_cards": self.model_cards,
        }


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def run_refresh(
    settings: Settings,
    *,
    run_id: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> RunSummary:
    """The refresh as plain Python (the Prefect flow below wraps it); see the module docstring."""
    from flows.clinical_cohort import run_clinical, run_cohort
    from flows.dask_cluster import dask_cluster
    from flows.extract_biomarkers import run_extract
    from flows.fit_models import run_models
    from flows.ingest_archive import run_ingest
    from flows.quality import run_quality
    from warehouse.lake import Warehouse

    say = progress or (lambda _msg: None)
    key = settings.key_bytes()
    if not settings.archives:
        raise ValueError("no archive: pass --archive or set OSTEOLAKE_ARCHIVES")
    if not settings.omop:
        raise ValueError("no OMOP source: pass --omop or set OSTEOLAKE_OMOP")
    summary = RunSummary(run_id=run_id or new_run_id(), started_at=datetime.now(UTC))
    wh = Warehouse(settings.warehouse, keep=settings.keep_snapshots)
    builder = wh.begin(summary.run_id)
    checks: list[Any] = []
    with dask_cluster(settings.dask_address, settings.workers) as address:
        with summary.stage("ingest") as c:
            say("ingest: indexing the archive")
            c.update(_counts(run_ingest(builder, settings.archives, key, dask_address=address,
                                        workers=settings.workers, issuer=settings.issuer)))
            checks += run_quality(builder, "ingest", ("instances", "series", "studies", "quarantine"))
        with summary.stage("extract") as c:
            say("extract: biomarkers from eligible series")
            c.update(run_extract(builder, settings.archives, dask_address=address,
                                 timeout_s=settings.extract_timeout_s))
            checks += run_quality(builder, "extract", None)
    with summary.stage("clinical") as c:
        say("clinical: OMOP CDM")
        clinical = run_clinical(builder, settings.omop, key, issuer=settings.issuer)
        c.update(clinical.counts)
        checks += clinical.checks
        checks += run_quality(builder, "clinical", None)
    with summary.stage("cohort") as c:
        say("cohort: index, follow-up, features")
        c.update(run_cohort(builder, settings.cohort_definition, clinical))
        checks += run_quality(builder, "cohort", None)
    with summary.stage("models") as c:
        say("models: fit, validate, gate, score")
        result = run_models(builder, settings.horizon_years, snapshot_parent=wh.current())
        c.update(result.counts)
        summary.model_cards = result.card_paths
        checks += run_quality(builder, "models", None)
    with summary.stage("quality") as c:
        from flows.quality import write_report
        from tasks.quality.gate import verdict

        outcome = verdict(checks, summary.run_id, summary.started_at)
        summary.blocked_by = list(outcome.critical_failures)
        summary.report_path = str(write_report(wh.root, outcome, summary.run_id))
        c.update(checks=len(checks), critical_failures=len(summary.blocked_by))
    with summary.stage("publish") as c:
        if summary.blocked_by:
            say("publish: BLOCKED by critical data-quality failures; the previous snapshot stays current")
            removed = builder.abort()  # the run's unpublished data files go now; nothing else changes
            c.update(published=False, files_removed=len(removed))
        else:
            info = builder.publish({"run_id": summary.run_id, "stages": summary.stages})
            summary.published_snapshot = info.id
            c.update(published=True, snapshot=info.id)
    status = "published" if summary.published_snapshot else "blocked"
    wh.record_run(summary.run_id, outcome.results,
                  summary.as_dict() | {"status": status, "is_published": bool(summary.published_snapshot),
                                       "snapshot_id": summary.published_snapshot})
    return summary


def _counts(d: dict[str, Any]) -> dict[str, Any]:
    """The scalar entries of a stage's summary (what the run table shows)."""
    keep = ("seen", "new", "changed", "indexed", "duplicates", "quarantined_total", "files_per_second")
    return {k: d[k] for k in keep if k in d}


@flow(name="nightly_refresh", log_prints=True)
def nightly_refresh(
    archives: list[str] | None = None,
    omop: str | None = None,
    warehouse: str | None = None,
    dask_address: str | None = None,
    workers: int | None = None,
    key_file: str | None = None,
) -> dict[str, Any]:
    """Prefect flow: the whole refresh (settings from the environment/TOML, parameters override)."""
    settings = load_settings(
        archives=archives, omop=omop, warehouse=Path(warehouse) if warehouse else None,
        dask_address=dask_address, workers=workers, pseudonym_key_file=Path(key_file) if key_file else None,
    )
    logger = get_run_logger()
    summary = run_refresh(settings, progress=logger.info)
    if summary.blocked_by:
        logger.error("publish blocked: %s (report: %s)", "; ".join(summary.blocked_by), summary.report_path)
    return summary.as_dict()
