"""Geometry of the synthetic patient: spine, ribs, sacrum, pelvis, muscles, fat, organs (patient mm, LPS).

Coordinates are DICOM patient coordinates: x towards the patient's left, y towards the back (posterior),
z towards the head. The spine runs along z (a mild lordotic offset in y, no rotation). Every structure is
analytic, so a slice can be painted at any resolution: :meth:`Anatomy.paint` fills a label image on a
separable grid (1-D ``x`` and ``y`` axes) at one ``z``; CT, radiographs, MR and the truth masks all use it.

Vertebral body of a level (centre ``zc``, width ``W``, depth ``D``, centre ``yc``): inside the ellipse
``(x / (W/2))^2 + u^2 <= 1`` with ``u = (y - yc) / (D/2)`` (``u = -1`` anterior, ``+1`` posterior) and
between the endplates ``zc -/+ h(u)/2 +/- c (1 - u^2)`` where ``h(u)`` runs linearly from the anterior
height ``Ha`` to the posterior height ``Hp`` and ``c`` is the endplate concavity at the centre. The
endplates depend on y only, so the mid-sagittal profile is also what a lateral projection shows. The truth
heights are the outer (cortex included) heights at x = 0: ``Ha = h(-1)``, ``Hm = h(0) - 2c``, ``Hp = h(1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from synthetic.population import LEVELS, Patient

# Labels of the tissue classes painted by :meth:`Anatomy.paint`.
AIR, LUNG, SAT, VAT, MUSCLE, IMAT, SOFT, LIVER, SPLEEN, KIDNEY = range(10)
BLOOD, GAS, DISC, CSF, CORTEX, POST_BONE, RIB_MARROW, BVV, TABLE = range(10, 19)
TRAB0 = 20  # trabecular bone of vertebra i (ALL_LEVELS order) is TRAB0 + i
ALL_LEVELS: tuple[str, ...] = ("T9", *LEVELS)
SACRUM_TRAB = TRAB0 + len(ALL_LEVELS)
N_LABELS = SACRUM_TRAB + 1
RIB_LEVELS: tuple[str, ...] = ("T9", "T10", "T11", "T12")

# Reference body height, width, depth (mm) at 170 cm, and the disc above each level.
_SIZE: dict[str, tuple[float, float, float]] = {
    "T9": (20.0, 32.0, 26.0), "T10": (21.0, 34.0, 27.0), "T11": (22.0, 36.0, 28.0),
    "T12": (23.5, 38.0, 29.0), "L1": (25.5, 41.0, 30.5), "L2": (26.5, 43.0, 31.5),
    "L3": (27.0, 45.0, 32.5), "L4": (27.0, 47.0, 33.0), "L5": (26.5, 49.0, 33.5),
}
_DISC_BELOW: dict[str, float] = {
    "T9": 6.0, "T10": 6.0, "T11": 6.5, "T12": 7.0, "L1": 8.0, "L2": 9.0, "L3": 10.0, "L4": 10.5, "L5": 9.5,
}
_ANT_POST: dict[str, float] = {"T9": 0.93, "T10": 0.94, "T11": 0.95, "T12": 0.96, "L1": 0.97, "L5": 1.04}
_LORDOSIS: dict[str, float] = {
    "T9": 2.0, "T10": 1.5, "T11": 1.0, "T12": 0.0, "L1": -1.5, "L2": -3.0, "L3": -4.0, "L4": -3.5, "L5": -2.0,
}
CORTEX_MM = 1.2
NORMAL_CONCAVITY_MM = 0.5


@dataclass
class Vertebra:
    """One vertebral body and its posterior elements."""

    level: str
    zc: float
    yc: float
    width: float
    depth: float
    h_ant: float
    h_post: float
    concavity: float
    fracture: str = "none"
    grade: int = 0

    def half_height(self, u: np.ndarray) -> np.ndarray:
        return 0.5 * (self.h_post + (self.h_ant - self.h_post) * (1.0 - u) / 2.0)

    def top(self, u: np.ndarray) -> np.ndarray:
        return self.zc + self.half_height(u) - self.concavity * np.clip(1.0 - u * u, 0.0, 1.0)

    def bottom(self, u: np.ndarray) -> np.ndarray:
        return self.zc - self.half_height(u) + self.concavity * np.clip(1.0 - u * u, 0.0, 1.0)

    @property
    def z_min(self) -> float:
        return self.zc - max(self.h_ant, self.h_post) / 2.0

    @property
    def z_max(self) -> float:
        return self.zc + max(self.h_ant, self.h_post) / 2.0

    def heights(self) -> tuple[float, float, float]:
        """Outer anterior, middle and posterior heights (mm) in the mid-sagittal plane."""
        u = np.array([-1.0, 0.0, 1.0])
        h = self.top(u) - self.bottom(u)
        return float(h[0]), float(h[1]), float(h[2])


@dataclass
class Ellipse:
    cx: float
    cy: float
    ax: float
    ay: float


@dataclass
class Anatomy:
    """All geometry of one patient; built by :func:`build_anatomy`."""

    vertebrae: list[Vertebra]
    z_s1: float  # top of the S1 endplate
    skin: Ellipse
    fascia: Ellipse
    cavity: Ellipse
    muscle_scale: float
    imat: list[tuple[str, int, float, float, float]]  # muscle, side, u, v, radius (mm)
    bowel: np.ndarray  # (n, 4): x, y, z, radius
    ribs: list[tuple[np.ndarray, float]]  # path points (n, 3) and tube radius
    organs: list[tuple[int, tuple[float, float, float], tuple[float, float, float]]] = field(default_factory=list)

    def vertebra(self, level: str) -> Vertebra:
        for v in self.vertebrae:
            if v.level == level:
                return v
        raise KeyError(f"level {level!r} is not in the anatomy")

    @property
    def z_top(self) -> float:
        return self.vertebrae[-1].z_max

    def paint(self, x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray:
        """Label image (len(y), len(x)) of the axial plane at ``z``; ``x``, ``y`` ascending (mm)."""
        c = _Canvas(x, y)
        self._paint_soft(c, z)
        self._paint_spine(c, z)
        self._paint_ribs(c, z)
        self._paint_pelvis(c, z)
        return c.lab

    # ----------------------------------------------------------------------------------------- soft tissue
    def _paint_soft(self, c: _Canvas, z: float) -> None:
        s, f, cav = self.skin, self.fascia, self.cavity
        c.ellipse(s.cx, s.cy, s.ax, s.ay, SAT)
        c.ellipse(f.cx, f.cy, f.ax, f.ay, MUSCLE)
        c.ellipse(cav.cx, cav.cy, cav.ax, cav.ay, VAT)
        if len(self.bowel):
            near = self.bowel[np.abs(self.bowel[:, 2] - z) < self.bowel[:, 3]]
            for bx, by, bz, r in near:
                rr = math.sqrt(r * r - (bz - z) ** 2)
                c.ellipse(bx, by, rr, rr, SOFT, only=(VAT,))
                if rr > 4.0 and (int(bx * 7 + bz * 3) % 3 == 0):  # a gas pocket on the anterior side
                    c.ellipse(bx, by - 0.45 * rr, 0.6 * rr, 0.4 * rr, GAS, only=(SOFT,))
        for lab, (ox, oy, oz), (sx, sy, sz) in self.organs:
            t = 1.0 - ((z - oz) / sz) ** 2
            if t > 0:
                k = math.sqrt(t)
                c.ellipse(ox, oy, sx * k, sy * k, lab, only=(VAT, SOFT, GAS, LIVER, SPLEEN))
        l1 = self.vertebra("L1")
        l4 = self.vertebra("L4")
        t12 = self.vertebra("T12")
        ao_y = l1.yc - l1.depth / 2 - 12.0
        if z >= l4.zc:
            c.ellipse(14.0, ao_y, 11.0, 11.0, BLOOD)
        else:
            d = min((l4.zc - z) * 0.35, 40.0)
            c.ellipse(10.0 + d, ao_y, 7.0, 7.0, BLOOD)
            c.ellipse(10.0 - d - 8.0, ao_y, 7.0, 7.0, BLOOD)
        c.ellipse(-22.0, ao_y + 2.0, 13.0, 9.0, BLOOD)
        t11 = self.vertebra("T11")
        if z > t11.zc - 15.0:  # posterior lung bases above the diaphragm
            k = min((z - t11.zc + 15.0) / 45.0, 1.0) ** 0.5
            for sgn in (-1.0, 1.0):
                c.ellipse(sgn * cav.ax * 0.55, cav.cy + cav.ay * 0.35, cav.ax * 0.38 * k, cav.ay * 0.5 * k, LUNG)
        self._paint_muscles(c, z, t12)

    def _muscles(self, z: float) -> list[tuple[str, Ellipse]]:
        m = self.muscle_scale
        t12 = self.vertebra("T12")
        l4 = self.vertebra("L4")
        vz = self._nearest(z)
        w2, yp = vz.width / 2.0, vz.yc + vz.depth / 2.0
        out: list[tuple[str, Ellipse]] = []
        lumbar = float(np.clip((t12.zc - z) / max(t12.zc - l4.zc, 1.0), 0.0, 1.0))
        para = 0.8 + 0.2 * lumbar
        for side in (-1.0, 1.0):
            out.append(("paraspinal", Ellipse(side * 23.0 * m, yp + 31.0, 24.0 * m * para, 20.0 * m * para)))
            if z < t12.zc and z > self.z_s1 - 20.0:
                s = 0.2 + 0.8 * lumbar**0.7
                ax, ay = 17.0 * m * s, 14.0 * m * s
                out.append(("psoas", Ellipse(side * (w2 + ax - 3.0), vz.yc + 2.0, ax, ay)))
                if z > self.z_s1 + 25.0:
                    out.append(("ql", Ellipse(side * (w2 + 48.0 * m), yp + 6.0, 15.0 * m, 8.0 * m)))
        return out

    def _paint_muscles(self, c: _Canvas, z: float, t12: Vertebra) -> None:
        ell = self._muscles(z)
        for _, e in ell:
            c.ellipse(e.cx, e.cy, e.ax, e.ay, MUSCLE)
        for name, side, u, v, r in self.imat:
            for mname, e in ell:
                if mname == name and (e.cx > 0) == (side > 0):
                    c.ellipse(e.cx + u * e.ax, e.cy + v * e.ay, r, r, IMAT, only=(MUSCLE,))

    def _nearest(self, z: float) -> Vertebra:
        return min(self.vertebrae, key=lambda v: abs(v.zc - z))

    # ----------------------------------------------------------------------------------------------- spine
    def _paint_spine(self, c: _Canvas, z: float) -> None:
        vs = self.vertebrae
        # Canal (CSF), continuous; centre interpolated between the nearest vertebrae.
        v = self._nearest(z)
        c.ellipse(0.0, v.yc + v.depth / 2.0 + 9.0, 10.0 if v.level.startswith("L") else 8.0, 8.0, CSF)
        for v in vs:
            if v.z_min - 0.7 * v.h_post - 30.0 <= z <= v.z_max + 0.7 * v.h_post:
                self._paint_posterior(c, v, z)
        for lo, up in zip(vs[:-1], vs[1:], strict=True):
            self._paint_disc(c, lo, up, z)
        for v in vs:
            if v.z_min <= z <= v.z_max:
                self._paint_body(c, v, z, TRAB0 + ALL_LEVELS.index(v.level))

    def _paint_body(self, c: _Canvas, v: Vertebra, z: float, trab: int) -> None:
        sl = c.bbox(-v.width / 2, v.width / 2, v.yc - v.depth / 2, v.yc + v.depth / 2)
        if sl is None:
            return
        sy, sx, xx, yy = sl
        u = (yy - v.yc) / (v.depth / 2.0)
        inside_z = (v.bottom(u) <= z) & (z <= v.top(u))
        ell = (xx / (v.width / 2.0)) ** 2 + u**2
        body = (ell <= 1.0) & inside_z
        t = CORTEX_MM
        ui = (yy - v.yc) / (v.depth / 2.0 - t)
        core = ((xx / (v.width / 2.0 - t)) ** 2 + ui**2 <= 1.0) & (v.bottom(u) + t <= z) & (z <= v.top(u) - t)
        lab = c.lab[sy, sx]
        lab[body] = CORTEX
        lab[core] = trab
        # Basivertebral vein: a low-density channel entering the posterior middle of the body.
        if abs(z - v.zc) <= 1.6:
            bvv = core & (np.abs(xx) <= 2.2) & (yy >= v.yc + v.depth / 2.0 - 0.35 * v.depth)
            lab[bvv] = BVV
            wall = body & ~core & (np.abs(xx) <= 2.2) & (yy > v.yc)
            lab[wall] = BVV

    def _paint_disc(self, c: _Canvas, lo: Vertebra, up: Vertebra, z: float) -> None:
        if z < lo.zc or z > up.zc:
            return
        w = (lo.width + up.width) / 2.0 + 1.0
        d = (lo.depth + up.depth) / 2.0 + 1.0
        f = (z - lo.zc) / max(up.zc - lo.zc, 1e-6)
        yc = lo.yc + f * (up.yc - lo.yc)
        sl = c.bbox(-w / 2, w / 2, yc - d / 2, yc + d / 2)
        if sl is None:
            return
        sy, sx, xx, yy = sl
        ok = (xx / (w / 2)) ** 2 + ((yy - yc) / (d / 2)) ** 2 <= 1.0
        ul = np.clip((yy - lo.yc) / (lo.depth / 2.0), -1, 1)
        uu = np.clip((yy - up.yc) / (up.depth / 2.0), -1, 1)
        ok &= (z > lo.top(ul)) & (z < up.bottom(uu))
        c.lab[sy, sx][ok] = DISC

    def _paint_posterior(self, c: _Canvas, v: Vertebra, z: float) -> None:
        h = v.h_post
        yp = v.yc + v.depth / 2.0
        lumbar = v.level.startswith("L")
        dz = z - v.zc
        lab = POST_BONE
        if -0.05 * h <= dz <= 0.42 * h:  # pedicles
            for s in (-1.0, 1.0):
                c.ellipse(s * 15.0, yp + 5.0, 4.5, 8.0, lab)
        if -0.5 * h <= dz <= 0.62 * h:  # articular processes (span the disc)
            for s in (-1.0, 1.0):
                c.rect(s * 17.0 - 4.5, s * 17.0 + 4.5, yp + 11.0, yp + 22.0, lab)
        if -0.3 * h <= dz <= 0.45 * h:  # lamina
            c.rect(-16.0, 16.0, yp + 17.0, yp + 23.0, lab)
        if 0.0 <= dz <= 0.32 * h:  # transverse processes
            length = (26.0 if v.level in ("L2", "L3", "L4") else 18.0) if lumbar else 16.0
            for s in (-1.0, 1.0):
                x0, x1 = sorted((s * 18.0, s * (18.0 + length)))
                c.rect(x0, x1, yp + 7.0 if lumbar else yp + 13.0, yp + 15.0 if lumbar else yp + 21.0, lab)
        # spinous process, sloping caudally (steeply in the thorax)
        slope = 0.12 if lumbar else 0.7
        length = 30.0 if lumbar else 34.0
        half = 8.0 if lumbar else 5.0
        y0 = yp + 22.0
        if -(half + slope * length) - 0.2 * h <= dz <= half:
            ya = max(y0, y0 + (-(dz + half)) / slope) if slope > 0 else y0
            yb = min(y0 + length, y0 + (half - dz) / slope)
            if yb > ya:
                c.rect(-3.5, 3.5, ya, yb, lab)

    # ------------------------------------------------------------------------------------------------ ribs
    def _paint_ribs(self, c: _Canvas, z: float) -> None:
        for pts, r in self.ribs:
            near = pts[np.abs(pts[:, 2] - z) < r]
            if not len(near):
                continue
            rr = np.sqrt(r * r - (near[:, 2] - z) ** 2)
            sl = c.bbox(float((near[:, 0] - rr).min()), float((near[:, 0] + rr).max()),
                        float((near[:, 1] - rr).min()), float((near[:, 1] + rr).max()))
            if sl is None:
                continue
            sy, sx, xx, yy = sl
            d2 = (xx[..., None] - near[:, 0]) ** 2 + (yy[..., None] - near[:, 1]) ** 2  # (ny, nx, n)
            sub = c.lab[sy, sx]
            sub[(d2 <= rr**2).any(axis=-1)] = POST_BONE
            inner = np.clip(rr - 1.5, 0.0, None)
            sub[(d2 <= inner**2).any(axis=-1)] = RIB_MARROW

    # ---------------------------------------------------------------------------------------------- pelvis
    def _paint_pelvis(self, c: _Canvas, z: float) -> None:
        l5 = self.vertebra("L5")
        dz = self.z_s1 - z  # depth below the top of S1
        if -35.0 < dz < 95.0:  # iliac wings (crest at about the L4/L5 disc)
            thick = 7.0 + 0.08 * max(dz, 0.0)
            reach = 125.0 - 0.5 * max(dz, 0.0) - 0.3 * max(-dz, 0.0)
            for s in (-1.0, 1.0):
                c.capsule(s * 48.0, l5.yc + 22.0 + 0.5 * max(dz, 0.0), s * reach, l5.yc - 28.0, thick, POST_BONE)
                c.capsule(s * 48.0, l5.yc + 22.0 + 0.5 * max(dz, 0.0), s * reach, l5.yc - 28.0, thick - 4.0,
                          SACRUM_TRAB)
        if 0.0 <= dz <= 100.0:  # sacrum, tilting backwards and narrowing
            yc = l5.yc + 0.6 * dz
            w = l5.width * (1.0 - 0.4 * dz / 100.0)
            d = l5.depth * (1.0 - 0.45 * dz / 100.0)
            ala = (108.0 if dz > 4.0 else 0.0) * (1.0 - 0.55 * dz / 100.0)
            if ala > 0:
                c.ellipse(0.0, yc + 4.0, ala / 2.0, d * 0.38, POST_BONE)
                c.ellipse(0.0, yc + 4.0, ala / 2.0 - 2.5, d * 0.38 - 2.5, SACRUM_TRAB)
            c.ellipse(0.0, yc, w / 2.0, d / 2.0, CORTEX)
            c.ellipse(0.0, yc, w / 2.0 - CORTEX_MM, d / 2.0 - CORTEX_MM, SACRUM_TRAB)
            c.ellipse(0.0, yc + d / 2.0 + 6.0, 8.0 * (1 - dz / 150.0), 5.0, CSF)
        elif -9.5 < dz < 0.0 and z < l5.z_min + 1.0:  # L5/S1 disc
            sl = c.bbox(-l5.width / 2 - 0.5, l5.width / 2 + 0.5, l5.yc - l5.depth / 2 - 0.5, l5.yc + l5.depth / 2 + 0.5)
            if sl is not None:
                sy, sx, xx, yy = sl
                u = np.clip((yy - l5.yc) / (l5.depth / 2.0), -1, 1)
                ok = ((xx / (l5.width / 2 + 0.5)) ** 2 + ((yy - l5.yc) / (l5.depth / 2 + 0.5)) ** 2 <= 1.0)
                ok &= z < l5.bottom(u)
                c.lab[sy, sx][ok] = DISC


class _Canvas:
    """A label image on a separable grid with bounding-box painting helpers."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y
        self.lab = np.zeros((len(y), len(x)), dtype=np.uint8)
        self._ax = _Axis(x)
        self._ay = _Axis(y)

    def bbox(
        self, x0: float, x1: float, y0: float, y1: float
    ) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
        i0, i1 = self._ax.span(x0, x1)
        j0, j1 = self._ay.span(y0, y1)
        if i1 <= i0 or j1 <= j0:
            return None
        return slice(j0, j1), slice(i0, i1), self.x[None, i0:i1], self.y[j0:j1, None]

    def ellipse(self, cx: float, cy: float, ax: float, ay: float, label: int,
                only: tuple[int, ...] | None = None) -> None:
        if ax <= 0 or ay <= 0:
            return
        sl = self.bbox(cx - ax, cx + ax, cy - ay, cy + ay)
        if sl is None:
            return
        sy, sx, xx, yy = sl
        m = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1.0
        sub = self.lab[sy, sx]
        if only is not None:
            allowed = np.zeros(256, dtype=bool)
            allowed[list(only)] = True
            m &= allowed[sub]
        sub[m] = label

    def rect(self, x0: float, x1: float, y0: float, y1: float, label: int) -> None:
        sl = self.bbox(x0, x1, y0, y1)
        if sl is not None:
            self.lab[sl[0], sl[1]] = label

    def capsule(self, x0: float, y0: float, x1: float, y1: float, r: float, label: int) -> None:
        """A thick segment from (x0, y0) to (x1, y1) with half-thickness ``r``."""
        if r <= 0:
            return
        sl = self.bbox(min(x0, x1) - r, max(x0, x1) + r, min(y0, y1) - r, max(y0, y1) + r)
        if sl is None:
            return
        sy, sx, xx, yy = sl
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
        m = (xx - x0 - t * dx) ** 2 + (yy - y0 - t * dy) ** 2 <= r * r
        self.lab[sy, sx][m] = label


class _Axis:
    """Index range of an ascending axis inside [lo, hi]; arithmetic when the axis is evenly spaced."""

    def __init__(self, a: np.ndarray) -> None:
        self.a, self.n = a, len(a)
        self.step = float(a[1] - a[0]) if len(a) > 1 else 0.0
        self.even = len(a) > 2 and self.step > 0 and bool(np.allclose(np.diff(a), self.step, rtol=1e-9, atol=1e-9))
        self.a0 = float(a[0]) if len(a) else 0.0

    def span(self, lo: float, hi: float) -> tuple[int, int]:
        if self.even:
            i0 = max(0, math.ceil((lo - self.a0) / self.step - 1e-9))
            i1 = min(self.n, math.floor((hi - self.a0) / self.step + 1e-9) + 1)
            return i0, i1
        return int(np.searchsorted(self.a, lo)), int(np.searchsorted(self.a, hi, side="right"))


def build_anatomy(p: Patient) -> Anatomy:
    """Geometry of patient ``p`` (deterministic: depends only on the patient)."""
    rng = np.random.default_rng([p.index, int(p.patient_id[3:10]), 0xA7A])
    male = p.sex == "M"
    sh = p.height_cm / 170.0
    hs = sh * (1.03 if male else 1.0)
    ws = sh**0.8 * (1.08 if male else 1.0)
    # Stack the vertebrae from the top of S1 upwards using the posterior heights.
    z_s1 = -330.0 + float(rng.uniform(-40.0, 40.0))
    y0 = float(rng.uniform(-6.0, 6.0))
    verts: list[Vertebra] = []
    z = z_s1
    for level in reversed(ALL_LEVELS):
        h0, w0, d0 = _SIZE[level]
        h = h0 * hs * float(rng.uniform(0.97, 1.03))
        z += _DISC_BELOW[level] * hs
        ratio = _ANT_POST.get(level, 1.0)
        h_ant, h_post, conc, kind, grade = h * ratio, h, NORMAL_CONCAVITY_MM, "none", 0
        frac = p.fracture_at(level) if level in LEVELS else None
        if frac is not None:
            kind, grade, loss = frac.kind, frac.grade, frac.height_loss
            if kind == "wedge":
                h_ant = h * (1.0 - loss)
            elif kind == "biconcave":
                conc = ((h_ant + h_post) / 2.0 - h_post * (1.0 - loss)) / 2.0  # Hm = Hp * (1 - loss)
            else:  # crush: the whole body loses height
                h_post = h * (1.0 - loss)
                h_ant = h_post * min(ratio, 1.0)
        zc = z + h_post / 2.0
        verts.append(Vertebra(level, zc, y0 + _LORDOSIS[level], w0 * ws, d0 * ws, h_ant, h_post, conc, kind, grade))
        z = zc + h_post / 2.0
    verts.reverse()
    verts.sort(key=lambda v: v.zc)  # ascending z: L5 first ... T9 last
    # Torso: skin, fascia (inner boundary of subcutaneous fat) and abdominal cavity.
    bmi = p.bmi
    a_s = (120.0 + 5.8 * (bmi - 18.0) + (12.0 if male else 0.0)) * sh**0.5
    b_s = (88.0 + 4.4 * (bmi - 18.0) + (8.0 if male else 0.0)) * sh**0.5
    t_sat = max(6.0, 6.0 + 1.5 * (bmi - 18.0) + (7.0 if not male else 0.0) - 2.0 * p.vat_z) * sh**0.5
    m = (1.0 + 0.10 * p.muscle_z) * sh**0.5 * (1.12 if male else 0.93)
    l3 = next(v for v in verts if v.level == "L3")
    b_f = b_s - t_sat
    y_back = l3.yc + l3.depth / 2.0 + 31.0 + 20.0 * m + 3.0  # fascia just behind the paraspinal muscles
    yt = y_back - b_f
    skin = Ellipse(0.0, yt, a_s, b_s)
    fascia = Ellipse(0.0, yt, a_s - t_sat, b_f)
    t_wall = 11.0 * m
    cavity = Ellipse(0.0, yt - 4.0, a_s - t_sat - t_wall, b_f - t_wall - 4.0)
    imat = _imat(rng, p)
    bowel = _bowel(rng, p, cavity, verts, z_s1)
    ribs = _ribs(verts, cavity)
    t11 = next(v for v in verts if v.level == "T11")
    l1 = next(v for v in verts if v.level == "L1")
    organs: list[tuple[int, tuple[float, float, float], tuple[float, float, float]]] = [
        (LIVER, (-cavity.ax * 0.38, cavity.cy + 5.0, t11.zc + 15.0), (cavity.ax * 0.58, cavity.ay * 0.8, 95.0)),
        (SPLEEN, (cavity.ax * 0.62, l1.yc + 20.0, t11.zc), (26.0, 42.0, 50.0)),
        (KIDNEY, (-(l1.width / 2 + 52.0), l1.yc + 3.0, l1.zc - 18.0), (27.0, 22.0, 55.0)),
        (KIDNEY, (l1.width / 2 + 52.0, l1.yc + 3.0, l1.zc - 6.0), (27.0, 22.0, 55.0)),
    ]
    return Anatomy(verts, z_s1, skin, fascia, cavity, m, imat, bowel, ribs, organs)


def _imat(rng: np.random.Generator, p: Patient) -> list[tuple[str, int, float, float, float]]:
    age = p.age_at(p.baseline)
    frac = float(np.clip(0.02 + 0.0015 * (age - 50.0) + 0.0015 * (40.0 - p.muscle_hu), 0.005, 0.10))
    out: list[tuple[str, int, float, float, float]] = []
    for name, area in (("paraspinal", 1500.0), ("psoas", 700.0), ("ql", 370.0)):
        for side in (-1, 1):
            left = frac * area
            while left > 0:
                r = float(rng.uniform(1.4, 3.0))
                ang, rad = float(rng.uniform(0, 2 * math.pi)), float(np.sqrt(rng.uniform(0.0, 0.55)))
                out.append((name, side, rad * math.cos(ang), rad * math.sin(ang), r))
                left -= math.pi * r * r
    return out


def _bowel(rng: np.random.Generator, p: Patient, cav: Ellipse, verts: list[Vertebra], z_s1: float) -> np.ndarray:
    """Bowel loops: spheres on a jittered lattice in the anterior cavity; the rest of the cavity is VAT."""
    f_vat = float(np.clip(0.22 + 0.025 * (p.bmi - 24.0) + (0.10 if p.sex == "M" else 0.0) + 0.09 * p.vat_z,
                          0.06, 0.75))
    step = 30.0
    r = step * 0.62 * (1.0 - f_vat) ** (1.0 / 3.0)
    out = []
    top = next(v for v in verts if v.level == "T12").zc
    for zz in np.arange(z_s1 - 60.0, top, step):
        for xx in np.arange(-cav.ax, cav.ax, step):
            for yy in np.arange(cav.cy - cav.ay, cav.cy + cav.ay * 0.3, step):
                jx, jy, jz = rng.uniform(-6.0, 6.0, 3)
                px, py, pz = xx + jx, yy + jy, zz + jz
                if ((px - cav.cx) / cav.ax) ** 2 + ((py - cav.cy) / cav.ay) ** 2 < 0.85:
                    out.append((px, py, pz, r * float(rng.uniform(0.85, 1.15))))
    return np.array(out, dtype=float).reshape(-1, 4)


def _ribs(verts: list[Vertebra], cav: Ellipse) -> list[tuple[np.ndarray, float]]:
    """Rib pairs of T9-T12 (T12 the last rib-bearing vertebra; T11 and T12 short floating ribs)."""
    spec = {"T9": (230.0, 50.0, 5.5), "T10": (200.0, 42.0, 5.5), "T11": (140.0, 30.0, 5.0), "T12": (85.0, 16.0, 4.5)}
    out: list[tuple[np.ndarray, float]] = []
    for v in verts:
        if v.level not in spec:
            continue
        length, drop, r = spec[v.level]
        z0 = v.zc + 0.25 * v.h_post
        for s in (-1.0, 1.0):
            head = np.array([s * (v.width / 2 + 3.0), v.yc + v.depth / 2 - 2.0])
            ax, ay = cav.ax + 4.0, cav.ay + 6.0
            th0 = math.asin(min((v.width / 2 + 40.0) / ax, 0.95))
            angle = np.array([s * ax * math.sin(th0), cav.cy + ay * math.cos(th0)])
            pts = [head + (angle - head) * t for t in np.linspace(0, 1, 12)]
            th, arc = th0, float(np.linalg.norm(angle - head))
            while arc < length:
                th += 1.5 / math.hypot(ax * math.cos(th), ay * math.sin(th))
                pts.append(np.array([s * ax * math.sin(th), cav.cy + ay * math.cos(th)]))
                arc += 1.5
            xy = np.array(pts)
            seg = np.r_[0.0, np.cumsum(np.hypot(*np.diff(xy, axis=0).T))]
            zz = z0 - drop * seg / max(seg[-1], 1.0)
            out.append((np.c_[xy, zz], r))
    return out
