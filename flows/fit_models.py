"""Fit, validate, gate and register the fracture-risk models on the cohort; score everyone.

Reads ``cohort``, ``features`` and the deep-model image crops (``image_crops``) from the snapshot being
built; writes ``model_registry`` and ``model_metrics`` (appended: every version is kept), ``predictions``
(replaced: the production model's scores), model cards (``WH/files/model_cards/<version>.html``) and the
deep model's weights (``WH/files/models/<version>/...``). Settings: ``horizon_years``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from flows.frames import read_frame
from tasks.models.config import ModelConfig
from tasks.models.suite import fit_and_validate
from warehouse.lake import SnapshotBuilder, SnapshotInfo


@dataclass
class ModelsStage:
    counts: dict[str, Any]
    card_paths: list[str] = field(default_factory=list)


def _images(builder: SnapshotBuilder) -> dict[str, np.ndarray] | None:
    """person_key -> L1-centred crop (HU) of the index series, from the ``image_crops`` table."""
    from tasks.biomarkers.crops import decode_crop

    try:
        crops = read_frame(builder, "image_crops")
    except KeyError:
        return None
    cohort = read_frame(builder, "cohort").select("person_key", "index_series_instance_uid")
    joined = cohort.join(crops, left_on="index_series_instance_uid", right_on="series_instance_uid", how="inner")
    if joined.height == 0:
        return None
    return {row["person_key"]: decode_crop(row) for row in joined.iter_rows(named=True)}


def _score_crops(builder: SnapshotBuilder, registry: pa.Table, artifacts: dict[str, bytes]) -> int:
    """Run every fitted deep model over every image crop (the deep model as an extractor): ``deep_risk``.

    The best deep model per outcome is the production one when the gate chose it, else the newest candidate;
    its scores feed the next cohort build's ``deep_risk_score``. Returns the rows written.
    """
    from schemas import get_table
    from tasks.biomarkers.crops import decode_crop
    from tasks.models.deep import deep_risk_score, load_deep

    reg = pl.from_arrow(registry)
    assert isinstance(reg, pl.DataFrame)
    deep = reg.filter((pl.col("model_kind") == "deep_cox") & pl.col("artifact_key").is_not_null())
    if deep.height == 0:
        return 0
    deep = deep.sort(pl.col("status") == "production", descending=True).unique("outcome", keep="first")
    crops = read_frame(builder, "image_crops")
    rows = []
    for model in deep.iter_rows(named=True):
        weights = artifacts.get(model["artifact_key"])
        if weights is None:
            continue
        fit = load_deep(weights)
        for crop in crops.iter_rows(named=True):
            rows.append({
                "series_instance_uid": crop["series_instance_uid"], "model_version": model["model_version"],
                "outcome": model["outcome"], "deep_risk_score": deep_risk_score(decode_crop(crop), fit),
            })
    builder.replace("deep_risk", get_table("deep_risk").conform(pa.Table.from_pylist(rows)) if rows
                    else get_table("deep_risk").empty())
    return len(rows)


def run_models(builder: SnapshotBuilder, horizon_years: float, snapshot_parent: SnapshotInfo | None) -> ModelsStage:
    """Fit every model family per outcome on the cohort in ``builder``; see the module docstring."""
    cohort = read_frame(builder, "cohort")
    features = read_frame(builder, "features")
    if cohort.height == 0:
        return ModelsStage(counts={"skipped": "empty cohort"})
    config = ModelConfig(horizon_years=horizon_years,
                         data_snapshot_id=snapshot_parent.id if snapshot_parent else None)
    run = fit_and_validate(cohort, features, config, images=_images(builder))
    builder.append("model_registry", run.registry)
    builder.append("model_metrics", run.metrics)
    builder.replace("predictions", run.predictions)
    cards = []
    for version, html in run.model_cards.items():
        cards.append(str(builder.put_file(f"model_cards/{version}.html", html.encode())))
    for key, data in run.artifacts.items():
        builder.put_file(key, data)
    scored = _score_crops(builder, run.registry, run.artifacts)
    return ModelsStage(
        counts={"models": run.registry.num_rows, "predictions": run.predictions.num_rows, "deep_scored": scored,
                "notes": "; ".join(run.notes)[:300]},
        card_paths=cards,
    )
