"""biomarkers tasks."""
