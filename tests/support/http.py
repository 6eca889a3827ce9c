"""Blocking HTTP GETs against a service's HTTP side port (health, metrics) in tests."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """``(status, body)`` of ``GET http://127.0.0.1:<port><path>``; an HTTP error status is returned, not
    raised. Blocking: from async tests call it through ``asyncio.to_thread`` when the server runs on the
    test's own loop."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310  http://127.0.0.1 only
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


async def get_json(port: int, path: str) -> tuple[int, dict[str, Any]]:
    """``(status, parsed JSON body)`` of ``GET http://127.0.0.1:<port><path>``, off the event loop."""
    status, body = await asyncio.to_thread(http_get, port, path)
    return status, json.loads(body)
