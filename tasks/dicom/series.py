"""Series and studies from instance rows: geometry, flags and which extractor may run on each series.

Eligibility rules (a series can be eligible for several extractors):

- ``ct_spine``: modality CT, axial slices, not a localizer, at least 2 positions and >= 30 mm coverage;
- ``vertebral_fracture_dx``: a DX/CR radiograph (not DXA) that is lateral (ViewPosition LL/RL/LAT/LATERAL,
  or "lat" in the description) of the spine (BodyPartExamined or description);
- ``dxa_hip`` / ``dxa_spine``: a DXA image (see :func:`is_dxa`) of the hip/femur or the (lumbar) spine.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import repeat
from statistics import median
from typing import Any

import numpy as np
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
    if len(c) <= 1:
        return next(iter(c), None)  # the common case: one value in the whole series
    best = max(c.values())
    return min((v for v, n in c.items() if n == best), key=lambda v: (type(v).__name__, str(v)))


def _median(values: Iterable[float | None]) -> float | None:
    vs = [v for v in values if v is not None and math.isfinite(v)]
    return float(median(vs)) if vs else None


#: Columns summarised by their most frequent value, then by their median (``_pixel``: the first pixel
#: spacing, or imager pixel spacing when there is none).
MODE_COLUMNS: tuple[str, ...] = (
    "study_instance_uid", "frame_of_reference_uid", "person_key", "patient_sex", "modality", "study_date",
    "series_number", "series_description", "protocol_name", "study_description", "body_part_examined",
    "manufacturer", "manufacturer_model_name", "convolution_kernel", "contrast_bolus_agent", "view_position",
    "rows", "columns",
)
MEDIAN_COLUMNS: tuple[str, ...] = ("age_at_study_years", "kvp", "slice_thickness_mm", "_pixel")
_TALLIED = MODE_COLUMNS + MEDIAN_COLUMNS
_COL = {c: i for i, c in enumerate(_TALLIED)}
#: The instance columns a series summary reads.
SERIES_INPUT_COLUMNS: tuple[str, ...] = (
    "series_instance_uid", *MODE_COLUMNS, *MEDIAN_COLUMNS[:-1], "image_type", "image_orientation_patient",
    "image_position_patient", "pixel_spacing_mm", "imager_pixel_spacing_mm",
)


@dataclass
class SeriesPartial:
    """What a series summary needs from some of its instances; partials merge in instance order.

    ``tallies`` counts the non-null values of :data:`MODE_COLUMNS` and :data:`MEDIAN_COLUMNS` (keyed by
    column index and value), ``positions`` holds ImagePositionPatient rows (n x 3) in instance order and
    ``z`` (where computed) their projections on the normal of ``iop``, rounded to 3 decimals as
    :func:`round` does, in the same order: the merge uses them as they are when the series' orientation
    is ``iop`` (nearly always), so that no position is handled one by one where partials are merged.
    """

    n: int = 0
    tallies: dict[tuple[int, Any], int] = field(default_factory=dict)
    localizer: bool = False
    any_type: bool = False
    all_derived: bool = True
    iop: list[float] | None = None
    positions: np.ndarray = field(default_factory=lambda: np.empty((0, 3)))
    z: np.ndarray | None = None


def _first_values(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """First element of each list (null for null or empty lists), and which lists are non-empty."""
    lengths = pc.fill_null(pc.list_value_length(arr), 0)
    nonempty = pc.greater(lengths, 0)
    firsts = pc.list_element(pc.if_else(nonempty, arr, pa.scalar(None, arr.type)), 0)
    return firsts, nonempty.to_numpy(zero_copy_only=False)


def series_partials(instances: pa.Table) -> dict[str, SeriesPartial]:
    """Per-series partial summaries of instance rows (vectorised; the row order is kept per series).

    Notes
    -----
    Merge them with :class:`SeriesAccumulator` in the order of the rows (first orientation wins).
    """
    n = instances.num_rows
    if n == 0:
        return {}
    t = instances.combine_chunks()

    def col(name: str) -> pa.Array:
        c = t.column(name)
        return c.chunk(0) if c.num_chunks == 1 else pa.concat_arrays(c.chunks)

    uids = col("series_instance_uid")
    ps_first, ps_some = _first_values(col("pixel_spacing_mm"))
    im_first, _ = _first_values(col("imager_pixel_spacing_mm"))
    pixel = pc.if_else(pa.array(ps_some), ps_first, im_first)
    keys = pa.table({"_s": uids, **{c: col(c) for c in _TALLIED[:-1]}, "_pixel": pixel})
    counts = keys.group_by(list(keys.column_names), use_threads=False).aggregate([([], "count_all")])
    out: dict[str, SeriesPartial] = {}
    cols = counts.columns
    for row in zip(*(c.to_pylist() for c in cols), strict=True):
        p = out.get(row[0])
        if p is None:
            p = out[row[0]] = SeriesPartial()
        k = row[-1]
        p.n += k
        tallies = p.tallies
        for ci, v in enumerate(row[1:-1]):
            if v is not None:
                tallies[(ci, v)] = tallies.get((ci, v), 0) + k
    # Per-row list columns, by series code (dictionary indices), row order kept.
    codes = pc.dictionary_encode(uids)
    names = codes.dictionary.to_pylist()
    idx = codes.indices.to_numpy(zero_copy_only=False)
    itype = col("image_type")
    lengths = pc.fill_null(pc.list_value_length(itype), 0).to_numpy(zero_copy_only=False)
    flat = pc.utf8_upper(pc.list_flatten(itype))
    parents = pc.list_parent_indices(itype).to_numpy(zero_copy_only=False)
    loc_rows = np.unique(parents[pc.fill_null(pc.equal(flat, "LOCALIZER"), False).to_numpy(zero_copy_only=False)])
    firsts, _ = _first_values(pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(lengths)].astype(np.int32)),
                                                       flat) if len(flat) else itype)
    derived = pc.fill_null(pc.equal(firsts, "DERIVED"), False).to_numpy(zero_copy_only=False)
    nonempty = lengths > 0
    for code in np.unique(idx[loc_rows]) if len(loc_rows) else ():
        out[names[code]].localizer = True
    for code in np.unique(idx[nonempty]):
        out[names[code]].any_type = True
    for code in np.unique(idx[nonempty & ~derived]):
        out[names[code]].all_derived = False
    iop = col("image_orientation_patient")
    iop_some = pc.fill_null(pc.greater(pc.list_value_length(iop), 0), False).to_numpy(zero_copy_only=False)
    rows_with = np.flatnonzero(iop_some)
    if len(rows_with):
        codes_with = idx[rows_with]
        _, first = np.unique(codes_with, return_index=True)
        for r in rows_with[first]:
            out[names[idx[r]]].iop = iop[int(r)].as_py()
    ipp = col("image_position_patient")
    ok = pc.fill_null(pc.equal(pc.list_value_length(ipp), 3), False)
    ok_np = ok.to_numpy(zero_copy_only=False)
    if ok_np.any():
        xyz = pc.list_flatten(ipp.filter(ok)).to_numpy(zero_copy_only=False).astype(float).reshape(-1, 3)
        pcodes = idx[ok_np]
        order = np.argsort(pcodes, kind="stable")
        bounds = np.flatnonzero(np.diff(pcodes[order])) + 1
        for part in np.split(order, bounds):
            p = out[names[pcodes[part[0]]]]
            p.positions = xyz[part]
            if p.iop is not None and len(p.iop) == 6:
                p.z = _rounded_z(p.positions, p.iop)
    return out


def pack_partials(partials: dict[str, SeriesPartial]) -> tuple[Any, ...]:
    """``partials`` as a few plain lists and two arrays (for pickling: unpickling a NumPy array per
    series costs a Python call each); :func:`unpack_partials` turns it back."""
    ps = list(partials.values())
    lengths = np.array([len(p.positions) for p in ps], np.int64)
    has_z = [p.z is not None for p in ps]
    positions = np.concatenate([p.positions for p in ps]) if ps else np.empty((0, 3))
    zs = [p.z for p in ps if p.z is not None]
    z = np.concatenate(zs) if zs else np.empty(0)
    return (list(partials), [p.n for p in ps], [p.tallies for p in ps],
            [(p.localizer, p.any_type, p.all_derived) for p in ps], [p.iop for p in ps],
            lengths, has_z, positions, z)


def unpack_partials(packed: tuple[Any, ...]) -> dict[str, SeriesPartial]:
    """The partials of :func:`pack_partials` (positions and z are views of its two arrays)."""
    uids, ns, tallies, flags, iops, lengths, has_z, positions, z = packed
    out = {}
    bounds = np.r_[0, np.cumsum(lengths)].tolist()
    zpos = 0
    for i, uid in enumerate(uids):
        a, b = bounds[i], bounds[i + 1]
        zi = None
        if has_z[i]:
            zi = z[zpos : zpos + b - a]
            zpos += b - a
        localizer, any_type, all_derived = flags[i]
        out[uid] = SeriesPartial(ns[i], tallies[i], localizer, any_type, all_derived, iops[i], positions[a:b], zi)
    return out


def _rounded_z(xyz: np.ndarray, iop: list[float]) -> np.ndarray:
    """Positions projected on the normal of ``iop`` (as Python's ``sum()`` would, term by term) and
    rounded to 3 decimals by :func:`round` (NumPy's rounding can differ in the last bit)."""
    n = _normal(iop)
    z = xyz[:, 0] * n[0] + xyz[:, 1] * n[1] + xyz[:, 2] * n[2]
    return np.array(list(map(round, z.tolist(), repeat(3))), dtype=float)


def _distinct(z: np.ndarray) -> np.ndarray:
    """The values of ``z`` each once, in the order of their first occurrence (what a ``set`` filled in
    that order holds: of 0.0 and -0.0 the first one; NaNs, which equal nothing, all kept)."""
    if len(z) < 2:
        return z
    _, first = np.unique(z, return_index=True, equal_nan=False)
    return z[np.sort(first)]


@dataclass
class _Series:
    partial: SeriesPartial
    #: distinct rounded z of the positions merged so far, each array in merge order
    zs: list[np.ndarray] = field(default_factory=list)
    zs_len: int = 0
    #: positions not yet projected, with their rounded z on their partial's orientation (if computed)
    pending: list[tuple[np.ndarray, np.ndarray | None, list[float] | None]] = field(default_factory=list)


class SeriesAccumulator:
    """Series (and study descriptions) summarised incrementally: memory per series, not per instance.

    Add partials (or instance tables) in instance order; :meth:`series_table` and :meth:`studies_table`
    give what :func:`aggregate_series` and :func:`aggregate_studies` give for all the rows at once.
    """

    def __init__(self, *, defer_positions: bool = False) -> None:
        self._series: dict[str, _Series] = {}
        self._desc: dict[str, Counter[str]] = defaultdict(Counter)
        self._defer = defer_positions  # keep raw positions (n x 3) until merged after earlier rows

    @property
    def series_uids(self) -> set[str]:
        return set(self._series)

    def merge(self, later: SeriesAccumulator) -> None:
        """Add everything of ``later`` (whose rows come after this one's; best built with
        ``defer_positions=True`` so that its positions are projected on the final orientation)."""
        if any(s.zs for s in later._series.values()):
            raise ValueError("merge: the later accumulator projected its positions; build it with "
                             "defer_positions=True")
        for uid, s in later._series.items():
            p = s.partial
            # its pending positions one partial at a time (each keeps the z of its own orientation)
            self.add({uid: SeriesPartial(p.n, p.tallies, p.localizer, p.any_type, p.all_derived, p.iop)})
            for pos, z, iop in s.pending:
                self.add({uid: SeriesPartial(0, {}, False, False, True, iop, pos, z)})
        self.add({}, later._desc)

    def __len__(self) -> int:
        return len(self._series)

    def add_table(self, instances: pa.Table) -> None:
        """Add instance rows (the columns of :data:`SERIES_INPUT_COLUMNS` at least)."""
        self.add(series_partials(instances), study_descriptions(instances))

    def add(self, partials: dict[str, SeriesPartial], descriptions: dict[str, Counter[str]] | None = None) -> None:
        """Merge partials of rows that come after every row added so far."""
        for uid, p in partials.items():
            s = self._series.get(uid)
            if s is None:
                s = self._series[uid] = _Series(SeriesPartial(all_derived=True))
            acc = s.partial
            acc.n += p.n
            for k, v in p.tallies.items():
                acc.tallies[k] = acc.tallies.get(k, 0) + v
            acc.localizer |= p.localizer
            acc.any_type |= p.any_type
            acc.all_derived &= p.all_derived
            if acc.iop is None and p.iop is not None:
                acc.iop = p.iop
            if len(p.positions):
                s.pending.append((p.positions, p.z, p.iop))
            if acc.iop is not None and s.pending and not self._defer:
                self._project(s)
        for study, c in (descriptions or {}).items():
            self._desc[study].update(c)

    @staticmethod
    def _project(s: _Series) -> None:
        iop = s.partial.iop
        if iop is None or len(iop) != 6:  # no normal: positions are not summarised
            s.pending = []
            return
        for xyz, z, z_iop in s.pending:
            # the z computed where the batch ran when it was projected on this normal, else computed here
            s.zs.append(z if z is not None and z_iop == iop else _rounded_z(xyz, iop))
            s.zs_len += len(s.zs[-1])
        s.pending = []
        if len(s.zs) > 1 and s.zs_len > 4096:  # memory per distinct position, not per instance
            s.zs = [_distinct(np.concatenate(s.zs))]
            s.zs_len = len(s.zs[0])

    def series_table(self) -> pa.Table:
        """The ``series`` table of everything added (sorted by series UID)."""
        decl = get_table("series")
        if not self._series:
            return _empty("series")
        for s in self._series.values():
            if s.pending:
                self._project(s)
        rows = [_series_row(uid, self._series[uid]) for uid in sorted(self._series)]
        return decl.conform(pa.Table.from_pylist(rows, schema=decl.arrow_schema()))

    def studies_table(self, series: pa.Table) -> pa.Table:
        """The ``studies`` table of ``series`` with the study descriptions added so far."""
        return aggregate_studies(series, descriptions=self._desc)

    @property
    def descriptions(self) -> dict[str, Counter[str]]:
        """StudyDescription counts per study of everything added."""
        return self._desc


def study_descriptions(instances: pa.Table) -> dict[str, Counter[str]]:
    """StudyDescription counts per study (empty descriptions left out)."""
    if instances.num_rows == 0:
        return {}
    g = instances.select(["study_instance_uid", "study_description"]).group_by(
        ["study_instance_uid", "study_description"], use_threads=False).aggregate([([], "count_all")])
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for uid, d, k in zip(*(c.to_pylist() for c in g.columns), strict=True):
        if d:
            out[uid][d] += k
    return dict(out)


def _by_column(tallies: dict[tuple[int, Any], int]) -> list[dict[Any, int]]:
    out: list[dict[Any, int]] = [{} for _ in _TALLIED]
    for (i, v), k in tallies.items():
        out[i][v] = k
    return out


def _tally_mode(c: dict[Any, int]) -> Any:
    """:func:`_mode` of values given by their counts."""
    if len(c) <= 1:
        return next(iter(c), None)  # the common case: one value in the whole series
    best = max(c.values())
    return min((v for v, k in c.items() if k == best), key=lambda v: (type(v).__name__, str(v)))


def _tally_median(c: dict[Any, int]) -> float | None:
    """:func:`_median` of values given by their counts."""
    vs = sorted((v, k) for v, k in c.items() if v is not None and math.isfinite(v))
    total = sum(k for _, k in vs)
    if not total:
        return None

    def nth(j: int) -> float:
        for v, k in vs:
            if j < k:
                return float(v)
            j -= k
        raise IndexError(j)

    if total % 2:
        return float(nth(total // 2))
    return float((nth(total // 2 - 1) + nth(total // 2)) / 2)


def _z_summary(parts: list[np.ndarray]) -> tuple[int | None, float | None, float | None, float | None, bool | None]:
    """(positions, z min, z max, median spacing, uniform spacing) of the rounded z values merged in
    order: what ``zs = sorted(set(values))``, its gaps ``b - a``, ``statistics.median`` and
    ``all(abs(g - spacing) <= tol)`` give, vectorised (the same float operations)."""
    z = np.concatenate(parts) if len(parts) > 1 else parts[0]
    if not len(z):
        return None, None, None, None, None
    if len(z) < 64 or not np.isfinite(z).all():
        # few values (NumPy's call overhead would dominate), or NaN and inf: one by one, in Python
        zs = sorted(set(z.tolist()))
        gap_list = [b - a for a, b in zip(zs, zs[1:], strict=False)]
        if not gap_list:
            return len(zs), zs[0], zs[-1], None, None
        spacing = float(median(gap_list))
        tol = max(0.1, 0.1 * spacing)
        return len(zs), zs[0], zs[-1], spacing, all(abs(g - spacing) <= tol for g in gap_list)
    z = np.sort(_distinct(z))
    if len(z) == 1:
        return 1, float(z[0]), float(z[0]), None, None
    gaps = np.diff(z)
    g = np.sort(gaps)
    m = len(g) // 2
    spacing = float(g[m]) if len(g) % 2 else float((g[m - 1] + g[m]) / 2)
    tol = max(0.1, 0.1 * spacing)
    return len(z), float(z[0]), float(z[-1]), spacing, bool(np.all(np.abs(gaps - spacing) <= tol))


@functools.lru_cache(maxsize=4096)
def _text_flags(modality: str | None, series_description: str | None, protocol_name: str | None,
                study_description: str | None, body_part: str | None, manufacturer: str | None,
                view_position: str | None) -> tuple[bool, bool, bool, bool]:
    """(DXA, spine, hip, lateral view) from a series' modality and texts; cached: an archive's series share
    a few protocols, so the same texts come again and again."""
    texts = [series_description, protocol_name, study_description, body_part]
    dxa = is_dxa(modality, texts, manufacturer)
    words = _words(*texts)
    body = (body_part or "").upper()
    spine = bool(words & {"SPINE", "LSPINE", "TSPINE", "TLSPINE", "LUMBAR", "THORACIC", "VERTEBRAL", "L1", "L4"}) \
        or "SPINE" in body
    hip = bool(words & {"HIP", "FEMUR", "FEMORAL", "NECK"}) or body in ("HIP", "FEMUR", "PELVIS")
    view = (view_position or "").upper()
    lateral = view in _LATERAL_VIEWS or bool(words & {"LAT", "LATERAL"})
    return dxa, spine, hip, lateral


def _series_row(uid: str, s: _Series) -> dict[str, Any]:
    p = s.partial
    t = _by_column(p.tallies)
    modes = dict(zip(MODE_COLUMNS, map(_tally_mode, t[: len(MODE_COLUMNS)]), strict=True))  # each once
    get = modes.__getitem__
    med = lambda k: _tally_median(t[_COL[k]])  # noqa: E731
    modality = get("modality")
    is_localizer = p.localizer
    is_derived = p.any_type and p.all_derived
    iop = p.iop
    orient = orientation_class(iop)
    z_min = z_max = spacing = None
    uniform = None
    n_pos = None
    if iop is not None and s.zs:
        n_pos, z_min, z_max, spacing, uniform = _z_summary(s.zs)
    coverage = (z_max - z_min) if z_max is not None and z_min is not None else None
    dxa, spine, hip, lateral = _text_flags(modality, get("series_description"), get("protocol_name"),
                                           get("study_description"), get("body_part_examined"),
                                           get("manufacturer"), get("view_position"))
    eligible = {
        "ct_spine": modality == "CT" and orient == "axial" and not is_localizer and (n_pos or 0) >= 2
        and (coverage or 0.0) >= MIN_CT_COVERAGE_MM,
        "vertebral_fracture_dx": modality in ("DX", "CR") and not dxa and lateral and spine,
        "dxa_hip": dxa and hip,
        "dxa_spine": dxa and spine and not hip,
    }
    agent = get("contrast_bolus_agent")
    return {
        "series_instance_uid": uid,
        "study_instance_uid": get("study_instance_uid"),
        "frame_of_reference_uid": get("frame_of_reference_uid"),
        "person_key": get("person_key"),
        "age_at_study_years": med("age_at_study_years"),
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
        "kvp": med("kvp"),
        "view_position": get("view_position"),
        "n_instances": p.n,
        "n_positions": n_pos,
        "rows": get("rows"),
        "columns": get("columns"),
        "pixel_spacing_mm": med("_pixel"),
        "slice_thickness_mm": med("slice_thickness_mm"),
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


def _empty(name: str) -> pa.Table:
    """The declared empty table (``Schema.empty_table`` imports pandas: seconds and tens of MB)."""
    return pa.Table.from_batches([], schema=get_table(name).arrow_schema())


def aggregate_series(instances: pa.Table) -> pa.Table:
    """The ``series`` table from instance rows (the columns of :data:`SERIES_INPUT_COLUMNS` suffice).

    Notes
    -----
    Positions are projected on the normal of the first orientation found (in row order); a series that
    mixes orientations is summarised by that one (the volume builder flags it).
    """
    acc = SeriesAccumulator()
    acc.add(series_partials(instances))
    return acc.series_table()


#: The series columns a study summary reads.
_STUDY_INPUTS = ("study_instance_uid", "person_key", "age_at_study_years", "patient_sex", "study_date", "modality",
                 "n_instances", "eligible_extractors")


def aggregate_studies(series: pa.Table, instances: pa.Table | None = None, *,
                      descriptions: dict[str, Counter[str]] | None = None) -> pa.Table:
    """The ``studies`` table from the ``series`` table and the study descriptions of the instances
    (``instances``, or their counts per study from :func:`study_descriptions`)."""
    decl = get_table("studies")
    if series.num_rows == 0:
        return _empty("studies")
    desc: dict[str, Counter[str]] = defaultdict(Counter)
    if descriptions is not None:
        desc.update(descriptions)
    if instances is not None and instances.num_rows:
        for uid, c in study_descriptions(instances).items():
            desc[uid].update(c)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in series.select(list(_STUDY_INPUTS)).to_pylist():  # Python objects of these columns only
        groups[r["study_instance_uid"]].append(r)
    rows = []
    for uid in sorted(groups, key=lambda u: (u is None, u or "")):
        g = groups[uid]
        rows.append({
            "study_instance_uid": uid,
            "person_key": _mode(r["person_key"] for r in g),
            "age_at_study_years": _median(r["age_at_study_years"] for r in g),
            "patient_sex": _mode(r["patient_sex"] for r in g),
            "study_date": _mode(r["study_date"] for r in g),
            "study_description": _tally_mode({d: k for d, k in desc[uid].items() if k > 0}) if desc.get(uid) else None,
            "modalities": sorted({r["modality"] for r in g if r["modality"]}),
            "n_series": len(g),
            "n_instances": sum(r["n_instances"] for r in g),
            "eligible_extractors": sorted({e for r in g for e in r["eligible_extractors"]}),
        })
    return decl.conform(pa.Table.from_pylist(rows, schema=decl.arrow_schema()))
