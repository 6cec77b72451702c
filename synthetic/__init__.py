"""A stand-in hospital: DICOM archive, OMOP CDM extract and ground truth, deterministic for a seed."""
