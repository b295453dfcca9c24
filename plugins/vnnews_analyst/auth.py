"""Airflow's login check for the analyst pages: the api-server mounts plugin apps
without one, and these pages should be no more public than the rest of the UI."""

from __future__ import annotations

from fastapi import Request


async def require_airflow_login(request: Request) -> None:
    """Accept the Airflow session cookie or a bearer token, as the UI's own API does; 401
    otherwise. Airflow's security module is imported here, in the api-server only."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    await get_user(request, None, await bearer_scheme(request))
