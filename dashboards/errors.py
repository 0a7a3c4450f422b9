"""The one shape of a refused web request: an HTTP status, a machine code, a human message.

The API (``dashboards.api.ApiError``), the alarm actions and the device overrides each refuse
for their own reasons; they share this so the API answers all of them the same way
(``{"error": code, "message": message}`` with the status).
"""

from __future__ import annotations


class RequestRefused(ValueError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
