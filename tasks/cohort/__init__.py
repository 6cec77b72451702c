"""cohort tasks."""
