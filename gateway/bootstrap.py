"""The first admin: from IMGSEARCH_GATEWAY_ADMIN_USERNAME / _PASSWORD, created at start
only when the catalog has no admin yet (there is never a default password)."""

from __future__ import annotations

import asyncio
import logging

from gateway.config import GatewaySettings
from services.common.errors import DomainError
from services.common.http import ServiceClient
from services.common.vocabulary import Role

logger = logging.getLogger(__name__)


async def ensure_first_admin(settings: GatewaySettings, catalog: ServiceClient,
                             *, attempts: int = 30, delay_s: float = 2.0) -> bool:
    """Create the configured admin if no admin exists; True when one was created."""
    username = settings.admin_username.strip()
    password = settings.admin_password.get_secret_value()
    if not username or not password:
        return False
    for attempt in range(attempts):
        try:
            users = (await catalog.arequest("GET", "/v1/users")).json()["users"]
            if any(user.get("role") == Role.admin for user in users):
                return False
            await catalog.arequest("POST", "/v1/users", json={
                "username": username, "password": password, "role": Role.admin})
            logger.info("first admin created", extra={"username": username})
            return True
        except DomainError as exc:
            if exc.code == "user_exists":
                return False
            if exc.status < 500:
                logger.error("first admin not created: %s (%s)", exc.message, exc.code)
                return False
            logger.warning("catalog not reachable for the first admin (attempt %d): %s",
                           attempt + 1, exc.message)
        await asyncio.sleep(delay_s)
    return False
