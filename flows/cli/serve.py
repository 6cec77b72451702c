"""``osteolake serve``: run the nightly refresh on its cron schedule from this process.

For sites without a Prefect work pool: ``flow.serve`` registers the ``nightly_refresh/nightly`` deployment
with the Prefect API (a server given by ``PREFECT_API_URL``, or a temporary local one) and executes its
scheduled runs here until interrupted. Sites with a work pool use ``prefect deploy`` with ``prefect.yaml``
instead; both use the same flow, name and schedule.
"""

from __future__ import annotations

import os
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from flows.cli.common import console, fail

DEPLOYMENT_NAME = "nightly"
DEFAULT_CRON = "0 2 * * *"


def check_timezone(tz: str) -> str:
    """``tz`` if it is an IANA time zone name; a ``ValueError`` naming the setting otherwise."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"time zone {tz!r} (OSTEOLAKE_TIMEZONE / --timezone) is not an IANA zone name") from e
    return tz


def build_deployment(cron: str = DEFAULT_CRON, timezone: str = "UTC", name: str = DEPLOYMENT_NAME) -> Any:
    """The served deployment of ``flows.nightly_refresh:nightly_refresh`` (not yet registered).

    Parameters
    ----------
    cron
        Cron expression (default 02:00 every day).
    timezone
        IANA time zone the cron expression is read in (daylight saving handled by Prefect).
    name
        Deployment name.

    Returns
    -------
    prefect.deployments.runner.RunnerDeployment
    """
    from prefect.schedules import Cron

    from flows.nightly_refresh import nightly_refresh

    tz = check_timezone(timezone)
    try:
        schedule = Cron(cron, timezone=tz)
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        raise ValueError(f"--cron {cron!r}: not a valid cron expression ({e})") from e
    return nightly_refresh.to_deployment(
        name=name,
        schedules=[schedule],
        description="osteolake nightly refresh (served by `osteolake serve`)",
        tags=["osteolake", "nightly"],
    )


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        cron: str = typer.Option(DEFAULT_CRON, "--cron", help="when to run (cron, in --timezone)"),
        timezone: str | None = typer.Option(None, "--timezone",
                                            help="IANA time zone (default: OSTEOLAKE_TIMEZONE / settings)"),
        name: str = typer.Option(DEPLOYMENT_NAME, "--name", help="deployment name"),
    ) -> None:
        """Serve the nightly refresh on its schedule from this process (for sites without a work pool)."""
        from flows.settings import SettingsError, load_settings

        try:
            settings = load_settings()
            tz = timezone or settings.timezone
            deployment = build_deployment(cron, tz, name)
        except (SettingsError, ValueError) as e:
            fail(str(e))
        from prefect import serve as prefect_serve

        api = os.environ.get("PREFECT_API_URL", "a temporary local Prefect server")
        console.print(f"serving [bold]nightly_refresh/{name}[/] at '{cron}' ({tz}) against {api}; Ctrl-C stops")
        prefect_serve(deployment)
