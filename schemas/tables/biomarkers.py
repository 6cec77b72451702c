"""CT biomarkers per series and vertebral level (silver): trabecular density, body composition, runs."""

from __future__ import annotations

import pyarrow as pa

from schemas.core import PHI, Column, Layer, Table

LEVELS = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
BODY_LEVELS = ("L1", "L3")
L1_CATEGORIES = ("osteoporosis_likely", "indeterminate", "normal_likely")
RUN_STATUS = ("ok", "partial", "failed", "skipped")


def _series() -> Column:
    return Column("series_instance_uid", pa.string(), "DICOM SeriesInstanceUID of the measured series",
                  nullable=False, phi=PHI.QUASI)


def _version() -> Column:
    return Column("extractor_version", pa.string(), "version of the extractor that made the row", nullable=False)


VERTEBRA_MEASUREMENTS = Table(
    name="vertebra_measurements",
    layer=Layer.SILVER,
    grain="one row per series and vertebral level",
    description=(
        "Trabecular attenuation of each labelled vertebral body T10-L5 on an axial CT: mean, median and SD "
        "of HU in a region inside the body clear of the cortex and the basivertebral vein, its volume, and "
        "vBMD from a linear HU-to-density calibration (default 0.80 mg/cm3 per HU, or phantomless internal "
        "calibration from air and fat). Values are as imaged: contrast (portal venous +10-25 HU) and kVp "
        "other than 120 are flagged, not corrected. l1_category applies the published L1 thresholds "
        "(<=110 HU osteoporosis likely, 110-160 indeterminate, >160 normal likely) on the L1 row only."
    ),
    key=("series_instance_uid", "level", "extractor_version"),
    columns=(
        _series(),
        Column("level", pa.string(), "vertebral level", nullable=False, allowed=LEVELS),
        Column("z_mm", pa.float64(), "patient z of the body centre (LPS, towards the head)", unit="mm"),
        Column("trabecular_hu_mean", pa.float64(), "mean HU in the trabecular ROI", unit="HU", min=-300, max=1200),
        Column("trabecular_hu_median", pa.float64(), "median HU in the trabecular ROI", unit="HU",
               min=-300, max=1200),
        Column("trabecular_hu_sd", pa.float64(), "SD of HU in the trabecular ROI", unit="HU", min=0, max=1000),
        Column("roi_volume_mm3", pa.float64(), "volume of the trabecular ROI", unit="mm3", min=0, max=200000),
        Column("vbmd_mg_cm3", pa.float64(), "volumetric BMD (K2HPO4-equivalent)", unit="mg/cm3",
               min=-300, max=1200),
        Column("calibration", pa.string(), "calibration method used for vBMD"),
        Column("l1_category", pa.string(), "L1 category from the published thresholds (L1 row only)",
               allowed=L1_CATEGORIES),
        Column("confidence", pa.float64(), "confidence in the level label", min=0, max=1),
        Column("is_contrast", pa.bool_(), "contrast agent recorded in the header"),
        Column("kvp", pa.float64(), "tube voltage", unit="kV", min=50, max=160),
        Column("qc_flags", pa.string(), "comma-separated flags, empty when none"),
        Column("study_instance_uid", pa.string(), "DICOM StudyInstanceUID", phi=PHI.QUASI),
        _version(),
    ),
)

BODY_COMPOSITION = Table(
    name="body_composition",
    layer=Layer.SILVER,
    grain="one row per series and vertebral level",
    description=(
        "Body composition on the axial slice through the centre of L3 (and L1): skeletal muscle area and "
        "mean HU (-29..150 HU), intermuscular, visceral and subcutaneous adipose areas (-190..-30 HU). "
        "The skeletal muscle index (area / height^2) is computed in the warehouse marts."
    ),
    key=("series_instance_uid", "level", "extractor_version"),
    columns=(
        _series(),
        Column("level", pa.string(), "vertebral level of the slice", nullable=False, allowed=BODY_LEVELS),
        Column("z_mm", pa.float64(), "patient z of the measured slice", unit="mm"),
        Column("muscle_area_cm2", pa.float64(), "skeletal muscle area", unit="cm2", min=0, max=800),
        Column("muscle_hu_mean", pa.float64(), "mean HU of skeletal muscle", unit="HU", min=-29, max=150),
        Column("imat_area_cm2", pa.float64(), "intermuscular adipose area", unit="cm2", min=0, max=300),
        Column("vat_area_cm2", pa.float64(), "visceral adipose area", unit="cm2", min=0, max=1500),
        Column("sat_area_cm2", pa.float64(), "subcutaneous adipose area", unit="cm2", min=0, max=2000),
        Column("confidence", pa.float64(), "confidence in the level label", min=0, max=1),
        Column("qc_flags", pa.string(), "comma-separated flags, empty when none"),
        Column("study_instance_uid", pa.string(), "DICOM StudyInstanceUID", phi=PHI.QUASI),
        _version(),
    ),
)

EXTRACTION_RUNS = Table(
    name="extraction_runs",
    layer=Layer.SILVER,
    grain="one row per series and extractor version",
    description=(
        "One CT biomarker extraction of a series: status, how many levels were found and measured, the "
        "volume and labelling flags, and the time taken. A series is planned again only for a new "
        "extractor version."
    ),
    key=("series_instance_uid", "extractor", "extractor_version"),
    columns=(
        _series(),
        Column("extractor", pa.string(), "extractor name", nullable=False),
        _version(),
        Column("status", pa.string(), "outcome of the run", nullable=False, allowed=RUN_STATUS),
        Column("n_slices", pa.int32(), "slices in the volume", min=0),
        Column("slice_mm", pa.float64(), "slice spacing", unit="mm", min=0, max=50),
        Column("pixel_mm", pa.float64(), "in-plane pixel spacing", unit="mm", min=0, max=10),
        Column("n_levels_found", pa.int16(), "vertebral levels labelled", min=0, max=30),
        Column("n_levels_measured", pa.int16(), "T10-L5 levels with a trabecular measurement", min=0, max=8),
        Column("min_confidence", pa.float64(), "lowest level confidence", min=0, max=1),
        Column("flags", pa.string(), "comma-separated volume and labelling flags, empty when none"),
        Column("error", pa.string(), "error message of a failed run"),
        Column("seconds", pa.float64(), "wall time of the extraction", unit="s", min=0),
        Column("study_instance_uid", pa.string(), "DICOM StudyInstanceUID", phi=PHI.QUASI),
    ),
)

TABLES = [VERTEBRA_MEASUREMENTS, BODY_COMPOSITION, EXTRACTION_RUNS]
