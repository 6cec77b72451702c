"""Latent fragility beyond density: vertebral fractures, hip geometry and bone texture (silver)."""

from __future__ import annotations

import pyarrow as pa

from schemas.core import PHI, Column, Layer, Table

LEVELS = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
FRACTURE_TYPES = ("none", "wedge", "biconcave", "crush")
SOURCES = ("ct", "radiograph", "dxa")
SIDES = ("left", "right")
MICRO_REGIONS = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "L1-L4")


def _series() -> Column:
    return Column("series_instance_uid", pa.string(), "DICOM SeriesInstanceUID of the measured series",
                  nullable=False, phi=PHI.QUASI)


def _common() -> tuple[Column, ...]:
    return (
        Column("study_instance_uid", pa.string(), "DICOM StudyInstanceUID", phi=PHI.QUASI),
        Column("source", pa.string(), "kind of image measured", nullable=False, allowed=SOURCES),
        Column("extractor_version", pa.string(), "version of the extractor that made the row", nullable=False),
    )


VERTEBRAL_FRACTURES = Table(
    name="vertebral_fractures",
    layer=Layer.SILVER,
    grain="one row per series and vertebral level",
    description=(
        "Vertebral body heights (anterior Ha, middle Hm, posterior Hp) measured on a CT mid-sagittal "
        "reformat or a lateral spine radiograph, the shape ratios Ha/Hp, Hm/Hp and Hp against the "
        "neighbouring levels' Hp, and the Genant semi-quantitative grade (0 <20% height loss, 1 20-25%, "
        "2 25-40%, 3 >40%) with its type. spinal_deformity_index (sum of grades) repeats the series value "
        "on each row. Heights are null where a level was found but could not be measured."
    ),
    key=("series_instance_uid", "level"),
    columns=(
        _series(),
        Column("level", pa.string(), "vertebral level", nullable=False, allowed=LEVELS),
        Column("height_anterior_mm", pa.float64(), "anterior body height Ha", unit="mm", min=0, max=80),
        Column("height_middle_mm", pa.float64(), "middle body height Hm", unit="mm", min=0, max=80),
        Column("height_posterior_mm", pa.float64(), "posterior body height Hp", unit="mm", min=0, max=80),
        Column("ratio_anterior_posterior", pa.float64(), "Ha / Hp", min=0, max=3),
        Column("ratio_middle_posterior", pa.float64(), "Hm / Hp", min=0, max=3),
        Column("ratio_posterior_neighbours", pa.float64(), "Hp / mean Hp of the adjacent levels", min=0, max=3),
        Column("height_loss", pa.float64(), "largest fractional height loss of the three ratios", min=0, max=1),
        Column("genant_grade", pa.int8(), "Genant semi-quantitative grade", min=0, max=3),
        Column("fracture_type", pa.string(), "deformity type ('none' for grade 0)", allowed=FRACTURE_TYPES),
        Column("is_fracture", pa.bool_(), "grade >= 1"),
        Column("spinal_deformity_index", pa.int16(), "sum of the grades of the series", min=0, max=24),
        Column("body_center_mm", pa.float64(),
               "cranio-caudal position of the body centre: patient z (CT) or image row (radiograph)", unit="mm"),
        Column("qc_flags", pa.string(), "comma-separated measurement flags, empty when none; "
               "'thick_slices': a CT series with slices thicker than 3 mm, where heights and grades are "
               "less accurate (see README)"),
        *_common(),
    ),
)

HIP_GEOMETRY = Table(
    name="hip_geometry",
    layer=Layer.SILVER,
    grain="one row per series and side",
    description=(
        "Proximal femur geometry from a DXA hip image (or CT covering the femur): femoral neck width "
        "(narrowest neck cross-section perpendicular to the neck axis), hip axis length (along the neck "
        "axis from the lateral cortex below the greater trochanter to the inner pelvic brim) and "
        "neck-shaft angle (between the neck axis and the femoral shaft axis)."
    ),
    key=("series_instance_uid", "side"),
    columns=(
        _series(),
        Column("side", pa.string(), "femur side", nullable=False, allowed=SIDES),
        Column("femoral_neck_width_mm", pa.float64(), "femoral neck width", unit="mm", min=5, max=80),
        Column("hip_axis_length_mm", pa.float64(), "hip axis length", unit="mm", min=40, max=200),
        Column("neck_shaft_angle_deg", pa.float64(), "neck-shaft angle", unit="deg", min=90, max=170),
        Column("femoral_head_diameter_mm", pa.float64(), "diameter of the fitted head circle", unit="mm",
               min=10, max=80),
        Column("qc_flags", pa.string(), "comma-separated measurement flags, empty when none"),
        *_common(),
    ),
)

TEXTURE = Table(
    name="texture",
    layer=Layer.SILVER,
    grain="one row per series and region",
    description=(
        "Trabecular bone texture: a TBS-style index (slope of the log-log variogram over lags of 1-4 "
        "pixels; higher = better connected microarchitecture) for DXA lumbar spine (region L1-L4) and "
        "grey-level co-occurrence (GLCM) features of the CT trabecular region of each level "
        "(HU window -100..500, 32 levels, distances 1-2 px, 4 angles pooled)."
    ),
    key=("series_instance_uid", "region"),
    columns=(
        _series(),
        Column("region", pa.string(), "vertebral level or level range", nullable=False, allowed=MICRO_REGIONS),
        Column("tbs_index", pa.float64(), "log-log variogram slope (TBS-style, not calibrated TBS)", min=-1,
               max=3),
        Column("glcm_contrast", pa.float64(), "GLCM contrast", min=0),
        Column("glcm_dissimilarity", pa.float64(), "GLCM dissimilarity", min=0),
        Column("glcm_homogeneity", pa.float64(), "GLCM homogeneity", min=0, max=1),
        Column("glcm_energy", pa.float64(), "GLCM energy", min=0, max=1),
        Column("glcm_correlation", pa.float64(), "GLCM correlation", min=-1, max=1),
        Column("glcm_entropy", pa.float64(), "GLCM entropy", unit="bit", min=0),
        Column("mean_intensity", pa.float64(), "mean of the region (HU for CT, stored value for DXA)"),
        Column("n_pixels", pa.int64(), "pixels (DXA) or voxels (CT) in the region", min=0),
        Column("qc_flags", pa.string(), "comma-separated measurement flags, empty when none"),
        *_common(),
    ),
)

TABLES: list[Table] = [VERTEBRAL_FRACTURES, HIP_GEOMETRY, TEXTURE]
