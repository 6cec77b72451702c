"""End-to-end survival network: fracture risk from an L1-centred image crop, Cox partial-likelihood loss.

The network sees the image only (a mid-sagittal crop or reformat resampled to ``grid x grid`` pixels). It
is trained with torchsurv's negative Cox partial log-likelihood (Efron ties) on CPU at demo scale and on a
GPU when one is present. Its weights travel as bytes (the warehouse stores them with the model version);
:func:`deep_risk_score` runs the same inference as an extractor (image -> score).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import ndimage
from torch import nn
from torchsurv.loss.cox import neg_partial_log_likelihood

from tasks.models.config import DeepConfig
from tasks.models.metrics import SurvData

FORMAT = "osteolake-deep-survival/1"


def prepare_image(image: NDArray[Any], config: DeepConfig) -> NDArray[np.float32]:
    """Resample a 2-D crop (or the mid-sagittal plane of a 3-D ``(z, y, x)`` volume) to the fixed grid.

    Values are HU; they are centred and scaled by ``config.hu_center``/``hu_scale`` and clipped to +-4.
    """
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[:, :, arr.shape[2] // 2]
    if arr.ndim != 2 or min(arr.shape) < 2:
        raise ValueError(f"image must be 2-D (or a 3-D volume), got shape {np.shape(image)}")
    if not np.isfinite(arr).all():
        raise ValueError("image has non-finite pixels")
    g = config.grid
    out = ndimage.zoom(arr, (g / arr.shape[0], g / arr.shape[1]), order=1, grid_mode=True, mode="nearest")
    out = out[:g, :g]
    return np.clip((out - config.hu_center) / config.hu_scale, -4.0, 4.0).astype(np.float32)


class SurvivalCNN(nn.Module):
    """Two conv blocks, global pooling, one linear output: the log relative hazard."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        c = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Linear(4 * c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.head(pooled).squeeze(1)  # type: ignore[no-any-return]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class DeepFit:
    """A trained network with its configuration; ``score`` gives the log relative hazard per image."""

    model: SurvivalCNN
    config: DeepConfig
    epochs_run: int
    device: str

    def score(self, images: NDArray[np.float32]) -> NDArray[np.float64]:
        """Scores of prepared images ``(n, grid, grid)`` (see :func:`prepare_image`)."""
        self.model.eval()
        dev = next(self.model.parameters()).device
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).to(dev)
            return self.model(x).double().cpu().numpy()  # type: ignore[no-any-return]

    def to_bytes(self) -> bytes:
        """The weights and settings, loadable by :func:`load_deep` (``torch.load(weights_only=True)``)."""
        buf = io.BytesIO()
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        torch.save({"format": FORMAT, "config": asdict(self.config), "state_dict": state}, buf)
        return buf.getvalue()


def load_deep(weights: bytes, device: str = "cpu") -> DeepFit:
    """Rebuild a :class:`DeepFit` from :meth:`DeepFit.to_bytes` output."""
    try:
        blob = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"deep model weights could not be read ({len(weights)} bytes): {e}") from e
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"deep model weights are not in format {FORMAT!r}")
    config = DeepConfig(**blob["config"])
    model = SurvivalCNN(config.channels)
    model.load_state_dict(blob["state_dict"])
    dev = _device(device)
    return DeepFit(model=model.to(dev), config=config, epochs_run=0, device=str(dev))


def train_deep(images: NDArray[np.float32], data: SurvData, config: DeepConfig, seed: int = 0) -> DeepFit:
    """Train the survival CNN on prepared images with the Cox partial likelihood (Efron ties).

    A fifth of the development set is held back inside training to pick the epoch with the lowest
    held-back loss (early stopping); the validation set of the model run is never seen.
    """
    if images.shape[0] != data.time.size:
        raise ValueError(f"{images.shape[0]} images for {data.time.size} persons")
    if int(data.event.sum()) < 2:
        raise ValueError("fewer than 2 events in the development set; cannot train the deep model")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = _device(config.device)
    n = images.shape[0]
    inner = np.zeros(n, dtype=bool)
    inner[rng.choice(n, size=max(1, n // 5), replace=False)] = True
    if data.event[inner].sum() == 0 or data.event[~inner].sum() < 2:
        inner[:] = False
    x = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).to(dev)
    t = torch.from_numpy(data.time.astype(np.float32)).to(dev)
    e = torch.from_numpy(data.event.astype(bool)).to(dev)
    fit_idx = torch.from_numpy(np.flatnonzero(~inner)).to(dev)
    hold_idx = torch.from_numpy(np.flatnonzero(inner)).to(dev)
    model = SurvivalCNN(config.channels).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Ties in `time` detected")
        return _train_loop(model, opt, x, t, e, fit_idx, hold_idx, config, str(dev))


def _train_loop(
    model: SurvivalCNN, opt: torch.optim.Optimizer, x: torch.Tensor, t: torch.Tensor, e: torch.Tensor,
    fit_idx: torch.Tensor, hold_idx: torch.Tensor, config: DeepConfig, dev: str,
) -> DeepFit:
    best = (float("inf"), 0, {k: v.detach().clone() for k, v in model.state_dict().items()})
    for epoch in range(1, config.epochs + 1):
        model.train()
        opt.zero_grad()
        xb = x[fit_idx]
        if epoch % 2 == 0:  # flip head-foot: a fracture looks the same upside down
            xb = torch.flip(xb, dims=(2,))
        loss = neg_partial_log_likelihood(model(xb), e[fit_idx], t[fit_idx], ties_method="efron")
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        if hold_idx.numel():
            model.eval()
            with torch.no_grad():
                val = float(neg_partial_log_likelihood(model(x[hold_idx]), e[hold_idx], t[hold_idx]))
        else:
            val = float(loss)
        if val < best[0]:
            best = (val, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    return DeepFit(model=model, config=config, epochs_run=best[1], device=dev)


def deep_risk_score(image: NDArray[Any], weights: bytes | DeepFit) -> float:
    """Extractor: the deep model's log relative hazard for one image (higher = higher fracture risk).

    Parameters
    ----------
    image
        L1-centred mid-sagittal crop in HU (2-D), or a ``(z, y, x)`` volume whose mid-sagittal plane is used.
    weights
        Bytes from the model registry (:meth:`DeepFit.to_bytes`) or an already loaded :class:`DeepFit`.

    Notes
    -----
    The score is relative (a log hazard ratio against the development cohort); absolute risk needs the
    model version's baseline hazard, which the model run stores with the registry row.
    """
    fit = load_deep(weights) if isinstance(weights, bytes) else weights
    return float(fit.score(prepare_image(image, fit.config)[None])[0])
