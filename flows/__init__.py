"""Prefect flows that compose tasks and the warehouse, the ``osteolake`` CLI and the deployments."""

import os

# A hospital pipeline does not phone home: Prefect's server telemetry is off unless a site turns it on.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
