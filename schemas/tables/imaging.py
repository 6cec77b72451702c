"""Bronze imaging tables written by ingest: instances, series, studies, quarantine, manifest, duplicates."""

from __future__ import annotations

import pyarrow as pa

from schemas.core import PHI, Column, Layer, Table

_S, _F, _I, _B = pa.string(), pa.float64(), pa.int64(), pa.bool_()
ORIENTATIONS = ("axial", "sagittal", "coronal", "other")
EXTRACTORS = ("ct_spine", "vertebral_fracture_dx", "dxa_hip", "dxa_spine")
REASONS = ("not_dicom", "truncated", "missing_tags", "unsupported_syntax", "unreadable", "parse_error")


def _uid(name: str, what: str, nullable: bool = False) -> Column:
    return Column(name, _S, f"DICOM {what} UID (links back to PACS)", nullable=nullable, phi=PHI.QUASI)


_PERSON = Column("person_key", _S, "keyed pseudonym of (IssuerOfPatientID, PatientID); null when the file has no "
                 "PatientID", phi=PHI.PSEUDONYMOUS)
_AGE = Column("age_at_study_years", _F, "age at the study date (birth date and study date, else PatientAge)",
              unit="year", min=0, max=130, phi=PHI.QUASI)
_SOURCE = Column("path", _S, "file path or URL inside the source archive", nullable=False, phi=PHI.QUASI)

INSTANCES = Table(
    name="instances",
    layer=Layer.BRONZE,
    grain="one row per DICOM instance (SOPInstanceUID), from the first file that held it",
    description="Header of every indexed DICOM instance: promoted typed columns and the rest of the header as "
    "DICOM JSON (PS3.18 Annex F) without bulk data, pixel data, person names or identifiers.",
    key=("sop_instance_uid",),
    columns=(
        _uid("sop_instance_uid", "SOP instance"),
        _uid("sop_class_uid", "SOP class", nullable=True),
        _uid("study_instance_uid", "study"),
        _uid("series_instance_uid", "series"),
        _uid("frame_of_reference_uid", "frame of reference", nullable=True),
        _SOURCE,
        Column("size_bytes", _I, "file size", unit="byte", nullable=False, min=0),
        Column("content_hash", _S, "SHA-256 of the whole file, first 128 bits, hex", nullable=False),
        Column("parser", _S, "which reader parsed the header", allowed=("fast", "pydicom")),
        Column("transfer_syntax_uid", _S, "TransferSyntaxUID of the file meta"),
        _PERSON,
        Column("patient_sex", _S, "PatientSex (M, F, O)", phi=PHI.QUASI),
        _AGE,
        Column("modality", _S, "Modality (CT, DX, CR, MR, OT, BMD, SR, ...)"),
        Column("study_date", pa.date32(), "StudyDate", phi=PHI.QUASI),
        Column("study_time", pa.time64("us"), "StudyTime"),
        Column("series_date", pa.date32(), "SeriesDate", phi=PHI.QUASI),
        Column("series_time", pa.time64("us"), "SeriesTime"),
        Column("acquisition_date", pa.date32(), "AcquisitionDate", phi=PHI.QUASI),
        Column("acquisition_time", pa.time64("us"), "AcquisitionTime"),
        Column("study_description", _S, "StudyDescription"),
        Column("series_description", _S, "SeriesDescription"),
        Column("protocol_name", _S, "ProtocolName"),
        Column("body_part_examined", _S, "BodyPartExamined"),
        Column("image_type", pa.list_(_S), "ImageType values (ORIGINAL/DERIVED, PRIMARY/SECONDARY, ...)"),
        Column("view_position", _S, "ViewPosition (AP, PA, LL, RL, LAT, ...)"),
        Column("image_laterality", _S, "ImageLaterality (L, R, B, U)"),
        Column("series_number", _I, "SeriesNumber"),
        Column("instance_number", _I, "InstanceNumber"),
        Column("image_orientation_patient", pa.list_(_F), "ImageOrientationPatient: row and column cosines (LPS)"),
        Column("image_position_patient", pa.list_(_F), "ImagePositionPatient: first voxel centre (LPS)", unit="mm"),
        Column("pixel_spacing_mm", pa.list_(_F), "PixelSpacing (row spacing, column spacing)", unit="mm"),
        Column("imager_pixel_spacing_mm", pa.list_(_F), "ImagerPixelSpacing (projection images)", unit="mm"),
        Column("slice_thickness_mm", _F, "SliceThickness", unit="mm", min=0),
        Column("spacing_between_slices_mm", _F, "SpacingBetweenSlices", unit="mm"),
        Column("slice_location_mm", _F, "SliceLocation", unit="mm"),
        Column("rows", _I, "Rows", min=0),
        Column("columns", _I, "Columns", min=0),
        Column("number_of_frames", _I, "NumberOfFrames", min=0),
        Column("photometric_interpretation", _S, "PhotometricInterpretation"),
        Column("kvp", _F, "KVP (peak tube voltage)", unit="kV", min=0),
        Column("contrast_bolus_agent", _S, "ContrastBolusAgent (empty or absent: no contrast recorded)"),
        Column("convolution_kernel", _S, "ConvolutionKernel (values joined by backslash)"),
        Column("manufacturer", _S, "Manufacturer"),
        Column("manufacturer_model_name", _S, "ManufacturerModelName"),
        Column("rescale_intercept", _F, "RescaleIntercept", unit="HU"),
        Column("rescale_slope", _F, "RescaleSlope"),
        Column("rescale_type", _S, "RescaleType"),
        Column("dicom_json", pa.large_string(), "rest of the header, DICOM JSON (PS3.18 Annex F) without binary "
               "values, private tags, person names or identifiers", phi=PHI.QUASI),
    ),
)

SERIES = Table(
    name="series",
    layer=Layer.BRONZE,
    grain="one row per DICOM series (SeriesInstanceUID)",
    description="Series aggregated from instances: counts, z-coverage, spacing uniformity, orientation class, "
    "localizer/derived flags and eligibility for each extractor.",
    key=("series_instance_uid",),
    columns=(
        _uid("series_instance_uid", "series"),
        _uid("study_instance_uid", "study"),
        _uid("frame_of_reference_uid", "frame of reference", nullable=True),
        _PERSON,
        _AGE,
        Column("patient_sex", _S, "PatientSex", phi=PHI.QUASI),
        Column("modality", _S, "Modality (most frequent in the series)"),
        Column("study_date", pa.date32(), "StudyDate", phi=PHI.QUASI),
        Column("series_number", _I, "SeriesNumber"),
        Column("series_description", _S, "SeriesDescription"),
        Column("body_part_examined", _S, "BodyPartExamined"),
        Column("manufacturer", _S, "Manufacturer"),
        Column("manufacturer_model_name", _S, "ManufacturerModelName"),
        Column("convolution_kernel", _S, "ConvolutionKernel"),
        Column("contrast_bolus_agent", _S, "ContrastBolusAgent"),
        Column("has_contrast", _B, "a contrast agent is recorded"),
        Column("kvp", _F, "KVP (median)", unit="kV", min=0),
        Column("view_position", _S, "ViewPosition (most frequent)"),
        Column("n_instances", _I, "indexed instances", nullable=False, min=1),
        Column("n_positions", _I, "distinct slice positions along the normal"),
        Column("rows", _I, "Rows (most frequent)"),
        Column("columns", _I, "Columns (most frequent)"),
        Column("pixel_spacing_mm", _F, "in-plane pixel spacing (row direction; median)", unit="mm", min=0),
        Column("slice_thickness_mm", _F, "SliceThickness (median)", unit="mm", min=0),
        Column("slice_spacing_mm", _F, "median distance between neighbouring slice positions", unit="mm", min=0),
        Column("is_spacing_uniform", _B, "all slice gaps within 10% (and 0.1 mm) of the median"),
        Column("z_min_mm", _F, "lowest slice position along the normal", unit="mm"),
        Column("z_max_mm", _F, "highest slice position along the normal", unit="mm"),
        Column("z_coverage_mm", _F, "z_max_mm - z_min_mm", unit="mm", min=0),
        Column("orientation_class", _S, "slice plane from ImageOrientationPatient", allowed=ORIENTATIONS),
        Column("is_localizer", _B, "ImageType says LOCALIZER (scout)"),
        Column("is_derived", _B, "ImageType starts with DERIVED"),
        Column("is_dxa", _B, "a bone densitometry (DXA) image by modality, description or vendor convention"),
        Column("is_eligible_ct_spine", _B, "axial CT, not a localizer, >= 30 mm coverage"),
        Column("is_eligible_vertebral_fracture_dx", _B, "DX/CR lateral spine radiograph"),
        Column("is_eligible_dxa_hip", _B, "DXA hip image"),
        Column("is_eligible_dxa_spine", _B, "DXA lumbar spine image"),
        Column("eligible_extractors", pa.list_(_S), "names of the extractors this series is eligible for"),
    ),
)

STUDIES = Table(
    name="studies",
    layer=Layer.BRONZE,
    grain="one row per DICOM study (StudyInstanceUID)",
    description="Studies aggregated from series.",
    key=("study_instance_uid",),
    columns=(
        _uid("study_instance_uid", "study"),
        _PERSON,
        _AGE,
        Column("patient_sex", _S, "PatientSex", phi=PHI.QUASI),
        Column("study_date", pa.date32(), "StudyDate", phi=PHI.QUASI),
        Column("study_description", _S, "StudyDescription"),
        Column("modalities", pa.list_(_S), "distinct modalities, sorted"),
        Column("n_series", _I, "series", nullable=False, min=1),
        Column("n_instances", _I, "indexed instances", nullable=False, min=1),
        Column("eligible_extractors", pa.list_(_S), "union of the series' eligible extractors, sorted"),
    ),
)

QUARANTINE = Table(
    name="quarantine",
    layer=Layer.BRONZE,
    grain="one row per source file that could not be indexed (latest verdict)",
    description="Files that are not indexable DICOM instances, with the reason class and the reader's message.",
    key=("path",),
    critical_checks=False,
    columns=(
        _SOURCE,
        Column("size_bytes", _I, "file size when read (null if unreadable)", unit="byte", min=0),
        Column("content_hash", _S, "SHA-256 of the file, first 128 bits, hex (null if unreadable)"),
        Column("reason", _S, "reason class", nullable=False, allowed=REASONS),
        Column("message", _S, "what the reader said (tag, byte offset, ...)"),
        Column("run_id", _S, "run that quarantined it"),
    ),
)

MANIFEST = Table(
    name="manifest",
    layer=Layer.BRONZE,
    grain="one row per source file seen (path)",
    description="Every file seen in the sources with the stat that decides whether it must be read again, and "
    "its outcome: indexed, duplicate (same SOPInstanceUID as an indexed file) or quarantined.",
    key=("path",),
    columns=(
        _SOURCE,
        Column("size_bytes", _I, "file size (listed; null when the source does not say)", unit="byte"),
        Column("mtime", _F, "modification time (POSIX seconds; null when the source does not say)", unit="s"),
        Column("content_hash", _S, "SHA-256 of the file, first 128 bits, hex (null if unreadable)"),
        Column("status", _S, "outcome", nullable=False, allowed=("indexed", "duplicate", "quarantined")),
        _uid("sop_instance_uid", "SOP instance", nullable=True),
        Column("run_id", _S, "run that last read the file", nullable=False),
    ),
)

DUPLICATES = Table(
    name="duplicates",
    layer=Layer.BRONZE,
    grain="one row per file whose SOPInstanceUID is already indexed from another file",
    description="Duplicate instances: the file that was not indexed and the file that was.",
    key=("path",),
    columns=(
        _SOURCE,
        _uid("sop_instance_uid", "SOP instance"),
        Column("indexed_path", _S, "the file indexed for this SOPInstanceUID", phi=PHI.QUASI),
        Column("content_hash", _S, "SHA-256 of the duplicate file, first 128 bits, hex"),
        Column("is_identical", _B, "same content hash as the indexed file"),
        Column("run_id", _S, "run that found it"),
    ),
)

TABLES: list[Table] = [INSTANCES, SERIES, STUDIES, QUARANTINE, MANIFEST, DUPLICATES]
