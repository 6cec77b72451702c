"""quality tasks."""
