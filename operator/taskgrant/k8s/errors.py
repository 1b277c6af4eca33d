"""The API's refusals, as the operator and the plugin see them."""

from __future__ import annotations

import json

# Answers worth another attempt: throttling and the server's own trouble.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def error_from(status: int, data: bytes) -> ApiError:
    try:
        payload = json.loads(data)
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    return ApiError(status, str(payload.get("reason") or "Error"), str(payload.get("message") or "")[:500])
