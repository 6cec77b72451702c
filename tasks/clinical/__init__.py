"""clinical tasks."""
