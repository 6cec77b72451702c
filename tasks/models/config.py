"""Settings of an outcome-model run: outcomes, horizon, predictor sets, validation split, gate, deep net."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from schemas.enums import StrValueEnum


class Outcome(StrValueEnum):
    """Predicted outcome: major osteoporotic fracture or hip fracture."""

    MOF = "mof"
    HIP = "hip"


class SplitKind(StrValueEnum):
    """Validation design: later index dates, another site, or a random hold-out."""

    TEMPORAL = "temporal"
    SITE = "site"
    RANDOM = "random"


class ModelName(StrValueEnum):
    """The model families fitted per outcome.

    ``conventional``: FRAX-type clinical risk factors (not FRAX, which is proprietary);
    ``conventional_bmd``: the same plus femoral-neck BMD; ``opportunistic``: conventional_bmd plus L1
    density, prevalent vertebral fracture and muscle; ``deep``: a survival CNN on the image alone.
    """

    CONVENTIONAL = "conventional"
    CONVENTIONAL_BMD = "conventional_bmd"
    OPPORTUNISTIC = "opportunistic"
    DEEP = "deep"


CLINICAL_RISK_FACTORS: tuple[str, ...] = (
    "age_years",
    "is_female",
    "bmi_kg_m2",
    "has_prior_fracture",
    "has_parental_hip_fracture",
    "is_current_smoker",
    "has_glucocorticoids",
    "has_rheumatoid_arthritis",
    "has_secondary_osteoporosis",
    "has_alcohol_3u",
)
BMD_PREDICTORS: tuple[str, ...] = ("fn_tscore",)
OPPORTUNISTIC_PREDICTORS: tuple[str, ...] = ("l1_trabecular_hu", "has_prevalent_vf", "muscle_hu_l3")


def default_predictor_sets() -> dict[ModelName, tuple[str, ...]]:
    """Predictor columns (of the ``features`` table) of each tabular model."""
    conv = CLINICAL_RISK_FACTORS
    return {
        ModelName.CONVENTIONAL: conv,
        ModelName.CONVENTIONAL_BMD: conv + BMD_PREDICTORS,
        ModelName.OPPORTUNISTIC: conv + BMD_PREDICTORS + OPPORTUNISTIC_PREDICTORS,
    }


@dataclass(frozen=True)
class GateConfig:
    """When a candidate may replace the reference model in production.

    A candidate passes when its validation Harrell's C is at least the reference's minus ``max_c_drop`` and
    its calibration slope lies in ``slope_band``. Among passing candidates the highest C wins; when none
    passes, the reference (the conventional model) is production.
    """

    reference: ModelName = ModelName.CONVENTIONAL_BMD
    max_c_drop: float = 0.0
    slope_band: tuple[float, float] = (0.8, 1.2)

    def __post_init__(self) -> None:
        object.__setattr__(self, "reference", ModelName(self.reference))
        lo, hi = self.slope_band
        if not lo < hi:
            raise ValueError(f"gate slope_band {self.slope_band}: lower bound must be below upper")


@dataclass(frozen=True)
class DeepConfig:
    """The image survival network: input grid, training length, device ('auto': GPU when present)."""

    grid: int = 32
    epochs: int = 80
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    channels: int = 8
    device: str = "auto"
    hu_center: float = 150.0
    hu_scale: float = 100.0

    def __post_init__(self) -> None:
        if self.grid < 8:
            raise ValueError(f"deep grid must be >= 8 pixels, got {self.grid}")
        if self.epochs < 1:
            raise ValueError(f"deep epochs must be >= 1, got {self.epochs}")


@dataclass(frozen=True)
class ModelConfig:
    """Everything a model run needs besides the data.

    Parameters
    ----------
    outcomes
        Outcomes to model (``"mof"``, ``"hip"``).
    horizon_years
        Prediction horizon; events after it count as censored at it.
    split, valid_fraction, split_date, validation_site
        Validation design. ``temporal``: persons indexed on or after ``split_date`` (default: the date that
        leaves ``valid_fraction`` of the cohort for validation) are held out; ``site``: persons of
        ``validation_site`` (default: the smallest site) are held out; ``random``: ``valid_fraction`` at random.
    n_bootstrap
        Resamples of the validation set behind every interval.
    thresholds
        Treatment threshold per outcome (risk at the horizon) for NRI and the high-risk flag.
    models
        Model families to fit; ``deep`` is skipped (and said so) when no images are given.
    predictor_sets
        Predictors of each tabular model; ``None`` uses :func:`default_predictor_sets`.
    max_missing
        Predictors missing in more than this fraction of the development set are dropped; others are
        imputed with the development median plus a missing indicator.
    """

    outcomes: tuple[Outcome, ...] = (Outcome.MOF, Outcome.HIP)
    horizon_years: float = 10.0
    split: SplitKind = SplitKind.TEMPORAL
    valid_fraction: float = 0.3
    split_date: date | None = None
    validation_site: str | None = None
    n_bootstrap: int = 100
    seed: int = 0
    thresholds: dict[Outcome, float] = field(default_factory=lambda: {Outcome.MOF: 0.20, Outcome.HIP: 0.03})
    models: tuple[ModelName, ...] = (
        ModelName.CONVENTIONAL,
        ModelName.CONVENTIONAL_BMD,
        ModelName.OPPORTUNISTIC,
        ModelName.DEEP,
    )
    predictor_sets: dict[ModelName, tuple[str, ...]] | None = None
    penalizer: float = 0.01
    max_missing: float = 0.8
    gate: GateConfig = field(default_factory=GateConfig)
    deep: DeepConfig = field(default_factory=DeepConfig)
    data_snapshot_id: str | None = None
    cohort_definition_hash: str | None = None
    decision_thresholds: tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcomes", tuple(Outcome(o) for o in self.outcomes))
        object.__setattr__(self, "split", SplitKind(self.split))
        object.__setattr__(self, "models", tuple(ModelName(m) for m in self.models))
        object.__setattr__(self, "thresholds", {Outcome(k): float(v) for k, v in self.thresholds.items()})
        if self.predictor_sets is not None:
            sets = {ModelName(k): tuple(v) for k, v in self.predictor_sets.items()}
            object.__setattr__(self, "predictor_sets", sets)
        if not self.outcomes:
            raise ValueError("ModelConfig.outcomes is empty")
        if not 0.1 <= self.horizon_years <= 30:
            raise ValueError(f"ModelConfig.horizon_years must be in [0.1, 30], got {self.horizon_years}")
        if not 0.05 <= self.valid_fraction <= 0.8:
            raise ValueError(f"ModelConfig.valid_fraction must be in [0.05, 0.8], got {self.valid_fraction}")
        if self.n_bootstrap < 0:
            raise ValueError(f"ModelConfig.n_bootstrap must be >= 0, got {self.n_bootstrap}")
        for o in self.outcomes:
            t = self.thresholds.get(o)
            if t is None or not 0 < t < 1:
                raise ValueError(f"ModelConfig.thresholds[{o.value!r}] must be a risk in (0, 1), got {t}")
        if not 0 <= self.max_missing < 1:
            raise ValueError(f"ModelConfig.max_missing must be in [0, 1), got {self.max_missing}")

    def predictors(self, model: ModelName | str) -> tuple[str, ...]:
        """Predictor columns of tabular model ``model``."""
        model = ModelName(model)
        sets = self.predictor_sets if self.predictor_sets is not None else default_predictor_sets()
        if model not in sets:
            raise KeyError(f"no predictor set for model {model.value!r}")
        return sets[model]
