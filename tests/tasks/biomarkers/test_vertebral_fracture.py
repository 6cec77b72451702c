"""Height measurement on simple drawn sagittal images with known heights, and its building blocks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from schemas.registry import get_table
from tasks.biomarkers.genant import FractureType
from tasks.biomarkers.vertebral_fracture import (
    assess_heights,
    fracture_table,
    guesses_from_centres,
    measure_body,
    outward_edge,
)
from tasks.biomarkers.vertebral_heights import outward_edges

FINE = 0.1  # mm, drawing grid
PIX = 1.0  # mm, image grid (each pixel the mean of 10x10 drawing cells: partial volume)


def draw_spine(bodies: Sequence[tuple[float, float, float, float]], depth: float = 32.0, disc: float = 8.0,
               seed: int = 0) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """Sagittal CT-like image (rows cranial-increasing, columns anterior->posterior) of stacked bodies.

    Each body is (Ha, Hm, Hp, concavity-free flag unused) drawn as trabecular bone (120 HU) in a 1.2 mm
    cortex (900 HU) between straight anterior/posterior walls; endplates are quadratic in the depth
    coordinate u through the three heights. Discs 85 HU, soft tissue 40 HU, noise SD 10 HU.
    """
    total = sum(max(b[0], b[2]) for b in bodies) + disc * (len(bodies) + 1)
    ny, nx = int(total / FINE), int((depth + 40) / FINE)
    img = np.full((ny, nx), 40.0)
    x = (np.arange(nx) + 0.5) * FINE - 20.0  # 0 = anterior wall
    u = 2 * x / depth - 1
    inside_x = (u >= -1) & (u <= 1)
    z = (np.arange(ny) + 0.5) * FINE
    img[:, inside_x] = 85.0
    centres = []
    z0 = disc
    levels = ["L1", "L2", "L3", "L4", "L5"][: len(bodies)]
    # draw from the bottom (row 0 is caudal): last level first
    for level, (ha, hm, hp, _) in zip(reversed(levels), reversed(bodies), strict=True):
        hmax = max(ha, hp)
        zc = z0 + hmax / 2
        # half heights: quadratic through u=-1 (ha), 0 (hm), 1 (hp)
        a = (ha + hp) / 2 - hm
        b = (hp - ha) / 2
        h = np.where(inside_x, hm + b * u + a * u * u, 0.0)
        top, bot = zc + h / 2, zc - h / 2
        body = (z[:, None] >= bot[None, :]) & (z[:, None] <= top[None, :]) & inside_x[None, :]
        core = (z[:, None] >= bot[None, :] + 1.2) & (z[:, None] <= top[None, :] - 1.2)
        core &= (np.abs(u) <= 1 - 2.4 / depth)[None, :]
        img[body] = 900.0
        img[body & core] = 120.0
        centres.append((level, zc, 20.0 + depth / 2))
        z0 += hmax + disc
    k = int(PIX / FINE)
    img = img[: ny // k * k, : nx // k * k].reshape(ny // k, k, nx // k, k).mean(axis=(1, 3))
    img += np.random.default_rng(seed).normal(0.0, 10.0, img.shape)
    return img, sorted(centres, key=lambda c: -c[1])


def test_outward_edge_plateau_and_thin_layer() -> None:
    step = np.r_[np.full(40, 100.0), np.full(40, 0.0)]
    e = outward_edge(step, 10, len(step))
    assert e == pytest.approx(39.5, abs=0.01)
    # a 4-sample bright layer (indices 36-39) blurred by a 9-sample box: the half-maximum moves out,
    # the centroid of the excess does not
    layer = np.r_[np.full(36, 100.0), np.full(4, 900.0), np.full(40, 50.0)]
    blurred = np.convolve(layer, np.ones(9) / 9, mode="same")
    e = outward_edge(blurred, 10, len(blurred), half_layer=2.0)
    assert e == pytest.approx(39.5, abs=0.35)
    assert outward_edge(np.full(30, 5.0), 5, 30) is None  # nothing stands out
    assert outward_edge(step, 10, 12) is None  # range too short


def test_wall_floor_is_the_tissue_next_to_the_wall() -> None:
    # a cortical wall (4 samples at 0.25 mm, blurred), 6 mm of soft tissue (40 HU) in front of it, then fat
    # (-100 HU): the floor of the whole range is the fat, and the soft tissue above it counts as part of the
    # layer, pulling the wall outwards; with floor_reach the floor is the soft tissue right outside
    prof = np.r_[np.full(40, 120.0), np.full(4, 900.0), np.full(24, 40.0), np.full(40, -100.0)]
    blurred = np.convolve(prof, np.ones(5) / 5, mode="same")
    far = outward_edge(blurred, 10, len(blurred) - 3, half_layer=2.0)
    near = outward_edge(blurred, 10, len(blurred) - 3, half_layer=2.0, floor_reach=16)
    assert near == pytest.approx(43.5, abs=0.35)  # the outer surface of the wall (last bright index 43)
    assert far is not None and far > near + 1.5
    # without anything darker further out the two agree
    plain = np.convolve(np.r_[np.full(40, 120.0), np.full(4, 900.0), np.full(52, 40.0)], np.ones(5) / 5,
                        mode="same")
    assert outward_edge(plain, 10, len(plain) - 3, 2.0, floor_reach=16) == pytest.approx(
        outward_edge(plain, 10, len(plain) - 3, 2.0), abs=1e-9)


def _outward_edge_loop(profile: np.ndarray, start: int, stop: int, half_layer: float = 0.0,
                       min_contrast: float = 0.0, fraction: float = 0.5) -> float | None:
    """The sample-by-sample walk that ``outward_edge`` / ``outward_edges`` vectorise (reference)."""
    step = 1 if stop > start else -1
    idx = np.arange(start, stop, step)
    if len(idx) < 4:
        return None
    p = np.asarray(profile, dtype=np.float64)[idx]
    rise = p.max() - p[0]
    level = p[0] + 0.7 * rise if rise > 0 else p.max()
    k = 0
    while k < len(p) - 1 and not (p[k] >= level and p[k] >= p[k + 1]):
        k += 1
    floor, peak = float(p[k:].min()), float(p[k])
    if peak - floor < max(0.25 * max(peak - min(floor, p[0]), 1e-9), min_contrast):
        return None
    inner = float(np.median(p[: max(k - int(round(2 * half_layer)) - 1, 1)]))
    if half_layer > 0 and peak - inner >= 0.3 * (peak - floor):
        lo = hi = k
        while lo > 0 and p[lo - 1] > inner + 0.1 * (peak - inner):
            lo -= 1
        while hi < len(p) - 1 and p[hi + 1] > floor + 0.1 * (peak - floor):
            hi += 1
        jj = np.arange(lo, hi + 1)
        base = np.where(jj < k, inner, np.where(jj > k, floor, 0.5 * (inner + floor)))
        w = np.clip(p[lo : hi + 1] - base, 0.0, None)
        if hi + 1 < len(p) and w.sum() > 0:
            return float(idx[0] + step * (np.sum(w * jj) / w.sum() + half_layer))
    half = floor + fraction * (peak - floor)
    for j in range(k, len(p) - 1):
        if p[j] >= half > p[j + 1]:
            return float(idx[j] + step * (p[j] - half) / (p[j] - p[j + 1]))
    return None


def test_outward_edges_match_the_sample_walk() -> None:
    # noisy blurred bodies with a cortex, plateaus and flat noise, both directions, with and without a layer
    rng = np.random.default_rng(7)
    z = np.arange(200.0)
    profiles = []
    for _ in range(60):
        top, bot = rng.uniform(120, 170), rng.uniform(20, 80)
        p = np.where((z > bot) & (z < top), rng.uniform(20, 300), rng.uniform(0, 120))
        p = p + np.where((np.abs(z - top) < 3) | (np.abs(z - bot) < 3), rng.uniform(0, 900), 0.0)
        p = np.convolve(p, np.ones(int(rng.integers(1, 15))), mode="same") + rng.normal(0, rng.uniform(1, 30), 200)
        profiles.append(p)
    profiles.append(np.full(200, 5.0))
    P = np.array(profiles)
    n_found = 0
    for start, stop in ((100, 200), (100, -1), (100, 190), (100, 10), (3, 0), (150, 154)):
        for half_layer, min_contrast in ((0.0, 0.0), (2.0, 0.0), (2.0, 40.0)):
            got = outward_edges(P, start, stop, half_layer, min_contrast)
            for row, g in zip(P, got, strict=True):
                want = _outward_edge_loop(row, start, stop, half_layer, min_contrast)
                assert (want is None) == bool(np.isnan(g))
                n_found += want is not None
                if want is not None:
                    assert g == pytest.approx(want, abs=1e-9)
                    assert outward_edge(row, start, stop, half_layer, min_contrast) == pytest.approx(want, abs=1e-9)
    assert n_found > 300


@pytest.mark.parametrize(
    ("heights", "grade", "kind"),
    [
        ((26.0, 25.0, 26.0), 0, FractureType.NONE),
        ((17.0, 21.5, 26.0), 2, FractureType.WEDGE),
        ((26.0, 14.0, 26.0), 3, FractureType.BICONCAVE),
    ],
)
def test_measure_drawn_body(heights: tuple[float, float, float], grade: int, kind: FractureType) -> None:
    bodies = [(26.0, 25.0, 26.0, 0), (*heights, 0), (26.0, 25.0, 26.0, 0)]
    img, centres = draw_spine(bodies)
    # start from centres 3 mm off along the spine and 4 mm off in depth (a labeller's error)
    rough = [(lv, r + 3.0, c + 4.0) for lv, r, c in centres]
    res = {a.level: a for a in assess_heights(img, (PIX, PIX), guesses_from_centres(rough))}
    a = res["L2"]
    for got, want in zip((a.height_anterior_mm, a.height_middle_mm, a.height_posterior_mm), heights, strict=True):
        assert got == pytest.approx(want, abs=0.6)
    assert a.genant_grade == grade and a.deformity is kind
    assert res["L1"].genant_grade == 0 and res["L3"].genant_grade == 0


def test_crush_against_neighbours_and_table() -> None:
    img, centres = draw_spine([(26, 25, 26, 0), (26, 25, 26, 0), (14, 13.5, 14, 0), (26, 25, 26, 0)], seed=3)
    res = assess_heights(img, (PIX, PIX), guesses_from_centres(centres))
    by = {a.level: a for a in res}
    assert by["L3"].genant_grade == 3 and by["L3"].deformity is FractureType.CRUSH
    assert by["L3"].ratio_posterior_neighbours == pytest.approx(14 / 26, abs=0.04)
    t = fracture_table("1.2.3", "1.2", res, "ct", "test")
    assert t.schema == get_table("vertebral_fractures").arrow_schema()
    assert t.num_rows == 4 and set(t.column("spinal_deformity_index").to_pylist()) == {3}
    assert t.column("is_fracture").to_pylist() == [False, False, True, False]


def test_missing_body_is_flagged_not_guessed() -> None:
    img = np.random.default_rng(1).normal(40.0, 10.0, (120, 80))
    g = guesses_from_centres([("L1", 60.0, 40.0)])[0]
    m = measure_body(img, (1.0, 1.0), g)
    assert m.anterior_mm is None and m.flags
