"""The production gate and the image survival network."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.models.config import DeepConfig, GateConfig, ModelName
from tasks.models.deep import deep_risk_score, load_deep, prepare_image, train_deep
from tasks.models.gate import gate
from tasks.models.metrics import harrell_c, truncate

REF, OPP, DEEP = ModelName.CONVENTIONAL_BMD, ModelName.OPPORTUNISTIC, ModelName.DEEP


def test_gate_picks_the_best_passing_candidate() -> None:
    est = {
        REF: {"c_harrell": 0.70, "calibration_slope": 0.9},
        OPP: {"c_harrell": 0.74, "calibration_slope": 1.05},
        DEEP: {"c_harrell": 0.76, "calibration_slope": 0.6},  # better C but miscalibrated
    }
    out = gate(est, REF, GateConfig())
    assert out[OPP][0] == "production"
    assert out[DEEP][0] == "rejected" and "slope 0.60" in out[DEEP][1]
    assert out[REF][0] == "candidate"


def test_gate_keeps_the_reference_when_nothing_passes() -> None:
    est = {REF: {"c_harrell": 0.70, "calibration_slope": 0.9}, OPP: {"c_harrell": 0.69, "calibration_slope": 1.0}}
    out = gate(est, REF, GateConfig())
    assert out[REF][0] == "production" and out[OPP][0] == "rejected"
    assert gate(est, REF, GateConfig(max_c_drop=0.02))[OPP][0] == "production"
    with pytest.raises(ValueError, match="slope_band"):
        GateConfig(slope_band=(1.2, 0.8))


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bright square on noise; its brightness sets the hazard (planted signal)."""
    rng = np.random.default_rng(seed)
    hu = rng.normal(150, 45, n)
    imgs = rng.normal(40, 20, size=(n, 40, 36)).astype(np.float32)
    imgs[:, 10:30, 8:28] += (hu - 40)[:, None, None].astype(np.float32)
    lp = -0.025 * (hu - 150)
    t = rng.exponential(1 / (0.05 * np.exp(lp)))
    return imgs, np.minimum(t, 10.0), t <= 10.0


def test_deep_net_learns_a_planted_image_signal_and_round_trips() -> None:
    cfg = DeepConfig(grid=16, epochs=40, device="cpu")
    imgs, t, e = _images(260, 1)
    prep = np.stack([prepare_image(i, cfg) for i in imgs])
    assert prep.shape == (260, 16, 16)
    dev, val = slice(0, 180), slice(180, None)
    fit = train_deep(prep[dev], truncate(t[dev], e[dev], 10.0), cfg, seed=0)
    c = harrell_c(truncate(t[val], e[val], 10.0), fit.score(prep[val]))
    assert c > 0.70  # the oracle C here is ~0.80
    loaded = load_deep(fit.to_bytes())
    np.testing.assert_allclose(loaded.score(prep[val]), fit.score(prep[val]), atol=1e-6)
    assert deep_risk_score(imgs[200], fit.to_bytes()) == pytest.approx(float(fit.score(prep[200:201])[0]), abs=1e-6)


def test_deep_inputs_are_checked() -> None:
    cfg = DeepConfig(grid=16)
    with pytest.raises(ValueError, match="2-D"):
        prepare_image(np.zeros(10), cfg)
    with pytest.raises(ValueError, match="not in format"):
        import io

        import torch

        buf = io.BytesIO()
        torch.save({"x": 1}, buf)
        load_deep(buf.getvalue())
    with pytest.raises(ValueError, match="fewer than 2 events"):
        train_deep(np.zeros((5, 16, 16), np.float32), truncate(np.ones(5), np.zeros(5, bool), 10.0), cfg)
