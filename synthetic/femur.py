"""Proximal femur and acetabulum of the left hip in the coronal (DXA) plane, and the hip geometry truth.

Image coordinates (mm): ``u`` towards the patient's left (lateral for the left hip), ``v`` towards the head;
the femoral head centre is at the origin. Shapes: head (sphere, radius ``r_head``), neck (cylinder of radius
``r_neck`` along the neck axis from the head centre to the shaft axis), shaft (cylinder, radius ``r_shaft``,
vertical), greater trochanter (ellipse superolateral to the neck base), lesser trochanter, and the
acetabular roof (an annular sector of thickness ``t_cup`` around the head). Truth (``hip_geometry``):

- femoral_neck_width_mm = ``2 * r_neck`` (the neck is a cylinder: its narrowest width);
- hip_axis_length_mm = distance along the neck axis from the lateral bone margin (trochanter/shaft) to the
  inner pelvic brim (the medial edge of the acetabular roof);
- neck_shaft_angle_deg = angle between the neck axis and the shaft axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np

from synthetic.population import Patient


@dataclass(frozen=True)
class Femur:
    r_head: float
    r_neck: float
    r_shaft: float
    neck_len: float
    nsa_deg: float
    t_cup: float

    @property
    def n(self) -> np.ndarray:
        """Unit vector of the neck axis, from the shaft towards the head (superomedial)."""
        a = math.radians(self.nsa_deg)
        return np.array([-math.sin(a), -math.cos(a)])

    @property
    def junction(self) -> np.ndarray:
        return -self.neck_len * self.n

    def masks(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Chord lengths (mm) through femur cortex+trabecular shapes at points (u, v), and the pelvis."""
        n = self.n
        j = self.junction
        rel_u, rel_v = u - j[0], v - j[1]
        t = rel_u * n[0] + rel_v * n[1]  # along the neck axis from the junction
        d = np.abs(rel_u * n[1] - rel_v * n[0])  # distance from the neck axis
        neck = np.where((t >= 0) & (t <= self.neck_len) & (d <= self.r_neck),
                        2 * np.sqrt(np.clip(self.r_neck**2 - d**2, 0, None)), 0.0)
        rh = np.hypot(u, v)
        head = 2 * np.sqrt(np.clip(self.r_head**2 - rh**2, 0, None))
        du = np.abs(u - j[0])
        shaft = np.where(v <= j[1] + self.r_shaft, 2 * np.sqrt(np.clip(self.r_shaft**2 - du**2, 0, None)), 0.0)
        gt_c = j + np.array([self.r_shaft * 0.55, 6.0])
        gt = ((u - gt_c[0]) / (self.r_shaft * 0.9)) ** 2 + ((v - gt_c[1]) / 24.0) ** 2
        troch = 28.0 * np.sqrt(np.clip(1 - gt, 0, None))
        lt_c = j + np.array([-self.r_shaft * 0.9, -32.0])
        lt = 16.0 * np.sqrt(np.clip(1 - ((u - lt_c[0]) / 7.0) ** 2 - ((v - lt_c[1]) / 9.0) ** 2, 0, None))
        femur = np.maximum.reduce([neck, head, shaft, troch, lt])
        # acetabular roof: annular sector around the head facing down-laterally
        ang = np.arctan2(v, u)
        c_ang = math.atan2(n[1] + 0.35, n[0])
        dang = np.abs((ang - c_ang + np.pi) % (2 * np.pi) - np.pi)
        cup = (rh >= self.r_head + 1.5) & (rh <= self.r_head + 1.5 + self.t_cup) & (dang <= math.radians(75))
        pelvis = np.where(cup, 22.0, 0.0)
        return femur, pelvis, cup

    def truth(self) -> dict[str, float]:
        """hip_geometry truth columns (mm, degrees); HAL found along the neck axis at 0.02 mm steps."""
        n = self.n
        s = np.arange(-200.0, 0.0, 0.02)  # from the head centre laterally along -n
        pts = s[:, None] * (-n[None, :]) * -1.0
        femur, _, _ = self.masks(pts[:, 0], pts[:, 1])
        lateral = float(-s[femur > 0].min())
        medial = self.r_head + 1.5 + self.t_cup
        return {"femoral_neck_width_mm": 2 * self.r_neck, "hip_axis_length_mm": lateral + medial,
                "neck_shaft_angle_deg": self.nsa_deg}


def femur_for(p: Patient) -> Femur:
    """The patient's left proximal femur (size by sex and height, angle and lengths sampled per patient)."""
    rng = np.random.default_rng([p.index, int(p.patient_id[3:10]), 0xFE])
    sh = p.height_cm / 170.0
    male = p.sex == "M"
    return Femur(
        r_head=(25.0 if male else 22.5) * sh * float(rng.uniform(0.96, 1.04)),
        r_neck=(17.0 if male else 15.0) * sh * float(rng.uniform(0.93, 1.07)),
        r_shaft=(15.0 if male else 13.5) * sh,
        neck_len=(58.0 if male else 53.0) * sh * float(rng.uniform(0.94, 1.06)),
        nsa_deg=float(rng.uniform(120.0, 138.0)),
        t_cup=float(rng.uniform(7.0, 10.0)),
    )


def render_hip(f: Femur, p: Patient, at: date, pix: float) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """AP areal BMD image (mg/cm^2) of the left hip; rows head -> feet, columns medial -> lateral."""
    u = np.arange(-70.0, 90.0, pix) + pix / 2
    v = np.arange(60.0, -130.0, -pix) - pix / 2
    uu, vv = np.meshgrid(u, v)
    femur, pelvis, _ = f.masks(uu, vv)
    tscore = p.dxa_tscore(at)
    fn_bmd = max(0.858 + 0.12 * tscore, 0.25)  # g/cm^2 (NHANES III young women reference)
    rho = fn_bmd * 1000.0 / (2 * f.r_neck / 10.0 * math.pi / 4.0)  # mg/cm^3 so the neck mean equals fn_bmd
    img = (femur / 10.0) * rho + (pelvis / 10.0) * rho * 1.2
    return img, (u, v)
