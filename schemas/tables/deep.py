"""Image inputs and outputs of the deep survival model (silver)."""

from __future__ import annotations

import pyarrow as pa

from schemas.core import PHI, Column, Layer, Table

IMAGE_CROPS = Table(
    name="image_crops",
    layer=Layer.SILVER,
    grain="one row per series and crop kind",
    description=(
        "Fixed-grid HU images cut from a CT series for the deep survival model: the mid-sagittal plane "
        "through the L1 body centre (96 mm square, 2 mm pixels), stored as little-endian float16 bytes."
    ),
    key=("series_instance_uid", "kind", "extractor_version"),
    columns=(
        Column("series_instance_uid", pa.string(), "DICOM SeriesInstanceUID", nullable=False, phi=PHI.QUASI),
        Column("kind", pa.string(), "what the crop shows", nullable=False, allowed=("l1_midsagittal",)),
        Column("rows", pa.int32(), "image rows (head to feet)", nullable=False, min=1, max=1024),
        Column("columns", pa.int32(), "image columns (anterior to posterior)", nullable=False, min=1, max=1024),
        Column("pixel_mm", pa.float64(), "pixel size", unit="mm", nullable=False, min=0.1, max=10),
        Column("pixels_f16", pa.binary(), "rows*columns float16 HU values, row-major, little endian",
               nullable=False),
        Column("extractor_version", pa.string(), "version of the crop code", nullable=False),
    ),
)

DEEP_RISK = Table(
    name="deep_risk",
    layer=Layer.SILVER,
    grain="one row per series and model version",
    description=(
        "The production deep model's risk score (linear predictor of the Cox partial likelihood) for every "
        "series with an image crop: the deep model's inference run as an extractor."
    ),
    key=("series_instance_uid", "model_version"),
    columns=(
        Column("series_instance_uid", pa.string(), "DICOM SeriesInstanceUID", nullable=False, phi=PHI.QUASI),
        Column("model_version", pa.string(), "the deep model version that scored it", nullable=False),
        Column("outcome", pa.string(), "outcome the model predicts", allowed=("mof", "hip")),
        Column("deep_risk_score", pa.float64(), "log relative hazard from the image", min=-50, max=50),
    ),
)

TABLES = [IMAGE_CROPS, DEEP_RISK]
