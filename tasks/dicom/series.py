"""Series and studies from instance rows: geometry, flags and which extractor may run on each series.

Eligibility rules (a series can be eligible for several extractors):

- ``ct_spine``: modality CT, axial slices, not a localizer, at least 2 positions and >= 30 mm coverage;
- ``vertebral_fracture_dx``: a DX/CR radiograph (not DXA) that is lateral (ViewPosition LL/RL/LAT/LATERAL,
  or "lat" in the description) of the spine (BodyPartExamined or description);
- ``dxa_hip`` / ``dxa_spine``: a DXA image (see :func:`is_dxa`) of the hip/femur or the (lumbar) spine.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from statistics import median
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from schemas import get_table

MIN_CT_COVERAGE_MM = 30.0
AXIS_COS = 0.8  # |normal component| above this names the plane; below: "other" (oblique)
_LATERAL_VIEWS = {"LL", "RL", "LAT", "LATERAL", "LLD", "RLD"}
_DXA_VENDORS = ("HOLOGIC", "LUNAR", "NORLAND", "OSTEOSYS", "MEDILINK", "DMS")
_WORD = re.compile(r"[A-Z0-9]+")


def _words(*texts: str | None) -> set[str]:
    return {w for t in texts if t for w in _WORD.findall(t.upper())}


def orientation_class(iop: list[float] | None) -> str | None:
    """``axial``, ``sagittal``, ``coronal`` or ``other`` from ImageOrientationPatient; ``None`` without one."""
    if not iop or len(iop) != 6 or not all(math.isfinite(v) for v in iop):
        return None
    r, c = iop[:3], iop[3:]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    norm = math.sqrt(sum(v * v for v in n))
    if norm < 1e-6:
        return "other"
    a = [abs(v) / norm for v in n]
    i = max(range(3), key=lambda k: a[k])
    if a[i] < AXIS_COS:
        return "other"
    return ("sagittal", "coronal", "axial")[i]


def _normal(iop: list[float]) -> tuple[float, float, float]:
    r, c = iop[:3], iop[3:]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    norm = math.sqrt(sum(v * v for v in n)) or 1.0
    return (n[0] / norm, n[1] / norm, n[2] / norm)


def is_dxa(modality: str | None, texts: Iterable[str | None], manufacturer: str | None) -> bool:
    """A bone densitometry image: Modality BMD, DXA/DEXA/densitometry in a description, or a DXA vendor's
    secondary capture (Modality OT from Hologic, GE Lunar, Norland, ...)."""
    mod = (modality or "").upper()
    if mod == "BMD":
        return True
    words = _words(*texts)
    if words & {"DXA", "DEXA", "DENSITOMETRY", "BMD", "ABSORPTIOMETRY"} or "BONE DENSITY" in " ".join(
        t.upper() for t in texts if t
    ):
        return mod not in ("CT", "MR", "PT", "NM", "US", "SR")
    man = (manufacturer or "").upper()
    return mod == "OT" and any(v in man for v in _DXA_VENDORS)


def _mode(values: Iterable[Any]) -> Any:
    """Most frequent non-null value; ties go to the smallest (by type name, then text), so it is deterministic."""
    c = Counter(v for v in values if v is not None)
    if not c:
        return None
    best = max(c.values())
    return min((v for v, n in c.items() if n == best), key=lambda v: (type(v).__name__, str(v)))


def _median(values: Iterable[float | None]) -> float | None:
    vs = [v for v in values if v is not None and math.isfinite(v)]
    return float(median(vs)) if vs else None


def _series_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    first = min(rows, key=lambda r: r["sop_instance_uid"])
    get = lambda k: _mode(r[k] for r in rows)  # noqa: E731
    modality = get("modality")
    image_types = [[s.upper() for s in (r["image_type"] or [])] for r in rows]
    is_localizer = any("LOCALIZER" in t for t in image_types)
    is_derived = bool(image_types) and all(t[:1] == ["DERIVED"] for t in image_types if t) and any(image_types)
    iops = [r["image_orientation_patient"] for r in rows if r["image_orientation_patient"]]
    iop = iops[0] if iops else None
    orient = orientation_class(iop)
    z_min = z_max = spacing = None
    uniform = None
    n_pos = None
    if iop is not None:
        n = _normal(iop)
        zs = sorted({round(sum(a * b for a, b in zip(n, r["image_position_patient"], strict=True)), 3)
                     for r in rows if r["image_position_patient"] and len(r["image_position_patient"]) == 3})
        if zs:
            n_pos = len(zs)
            z_min, z_max = zs[0], zs[-1]
            gaps = [b - a for a, b in zip(zs, zs[1:], strict=False)]
            if gaps:
                spacing = float(median(gaps))
                tol = max(0.1, 0.1 * spacing)
                uniform = all(abs(g - spacing) <= tol for g in gaps)
    coverage = (z_max - z_min) if z_max is not None and z_min is not None else None
    texts = [get("series_description"), get("protocol_name"), get("study_description"), get("body_part_examined")]
    dxa = is_dxa(modality, texts, get("manufacturer"))
    words = _words(*texts)
    body = (get("body_part_examined") or "").upper()
    spine = bool(words & {"SPINE", "LSPINE", "TSPINE", "TLSPINE", "LUMBAR", "THORACIC", "VERTEBRAL", "L1", "L4"}) \
        or "SPINE" in body
    hip = bool(words & {"HIP", "FEMUR", "FEMORAL", "NECK"}) or body in ("HIP", "FEMUR", "PELVIS")
    view = (get("view_position") or "").upper()
    lateral = view in _LATERAL_VIEWS or bool(words & {"LAT", "LATERAL"})
    pixel = [r["pixel_spacing_mm"] or r["imager_pixel_spacing_mm"] for r in rows]
    eligible = {
        "ct_spine": modality == "CT" and orient == "axial" and not is_localizer and (n_pos or 0) >= 2
        and (coverage or 0.0) >= MIN_CT_COVERAGE_MM,
        "vertebral_fracture_dx": modality in ("DX", "CR") and not dxa and lateral and spine,
        "dxa_hip": dxa and hip,
        "dxa_spine": dxa and spine and not hip,
    }
    agent = get("contrast_bolus_agent")
    return {
        "series_instance_uid": first["series_instance_uid"],
        "study_instance_uid": get("study_instance_uid"),
        "frame_of_reference_uid": get("frame_of_reference_uid"),
        "person_key": get("person_key"),
        "age_at_study_years": _median(r["age_at_study_years"] for r in rows),
        "patient_sex": get("patient_sex"),
        "modality": modality,
        "study_date": get("study_date"),
        "series_number": get("series_number"),
        "series_description": get("series_description"),
        "body_part_examined": get("body_part_examined"),
        "manufacturer": get("manufacturer"),
        "manufacturer_model_name": get("manufacturer_model_name"),
        "convolution_kernel": get("convolution_kernel"),
        "contrast_bolus_agent": agent,
        "has_contrast": bool(agent and agent.strip().upper() not in ("NONE", "NO", "N/A", "0")),
        "kvp": _median(r["kvp"] for r in rows),
        "view_position": get("view_position"),
        "n_instances": len(rows),
        "n_positions": n_pos,
        "rows": get("rows"),
        "columns": get("columns"),
        "pixel_spacing_mm": _median(p[0] if p else None for p in pixel),
        "slice_thickness_mm": _median(r["slice_thickness_mm"] for r in rows),
        "slice_spacing_mm": spacing,
        "is_spacing_uniform": uniform,
        "z_min_mm": z_min,
        "z_max_mm": z_max,
        "z_coverage_mm": coverage,
        "orientation_class": orient,
        "is_localizer": is_localizer,
        "is_derived": is_derived,
        "is_dxa": dxa,
        **{f"is_eligible_{k}": v for k, v in eligible.items()},
        "eligible_extractors": sorted(k for k, v in eligible.items() if v),
    }


def aggregate_series(instances: pa.Table) -> pa.Table:
    """The ``series`` table from instance rows (the narrow columns of ``tasks.dicom.ingest`` suffice).

    Notes
    -----
    Positions are projected on the normal of the first orientation found; a series that mixes
    orientations is summarised by that one (the volume builder flags it).
    """
    decl = get_table("series")
    if instances.num_rows == 0:
        return decl.empty()
    # Sort once (one copy of the narrow columns), then turn one series at a time into Python rows.
    t = instances.take(pc.sort_indices(instances, sort_keys=[("series_instance_uid", "ascending")]))
    t = t.combine_chunks()
    uids = t.column("series_instance_uid")
    ends = pc.indices_nonzero(pc.not_equal(uids.slice(1), uids.slice(0, len(uids) - 1))).to_pylist()
    bounds = [0, *[e + 1 for e in ends], len(uids)]
    rows = [_series_row(t.slice(a, b - a).to_pylist()) for a, b in zip(bounds, bounds[1:], strict=False)]
    return decl.conform(pa.Table.from_pylist(rows, schema=decl.arrow_schema()))


def aggregate_studies(series: pa.Table, instances: pa.Table | None = None) -> pa.Table:
    """The ``studies`` table from the ``series`` table (and ``instances`` for the study description)."""
    decl = get_table("studies")
    if series.num_rows == 0:
        return decl.empty()
    desc: dict[str, Counter[str]] = defaultdict(Counter)
    if instances is not None and instances.num_rows:
        cols = instances.select(["study_instance_uid", "study_description"]).to_pydict()
        for uid, d in zip(cols["study_instance_uid"], cols["study_description"], strict=True):
            if d:
                desc[uid][d] += 1
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in series.to_pylist():
        groups[r["study_instance_uid"]].append(r)
    rows = []
    for uid in sorted(groups):
        g = groups[uid]
        rows.append({
            "study_instance_uid": uid,
            "person_key": _mode(r["person_key"] for r in g),
            "age_at_study_years": _median(r["age_at_study_years"] for r in g),
            "patient_sex": _mode(r["patient_sex"] for r in g),
            "study_date": _mode(r["study_date"] for r in g),
            "study_description": _mode(desc[uid].elements()) if desc.get(uid) else None,
            "modalities": sorted({r["modality"] for r in g if r["modality"]}),
            "n_series": len(g),
            "n_instances": sum(r["n_instances"] for r in g),
            "eligible_extractors": sorted({e for r in g for e in r["eligible_extractors"]}),
        })
    return decl.conform(pa.Table.from_pylist(rows, schema=decl.arrow_schema()))
