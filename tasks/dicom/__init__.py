"""dicom tasks."""
