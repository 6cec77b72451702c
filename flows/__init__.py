"""Prefect flows that compose tasks and the warehouse, the ``osteolake`` CLI and the deployments."""
