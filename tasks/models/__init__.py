"""models tasks."""
