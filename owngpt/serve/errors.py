"""Errors in the OpenAI API's shape: {"error": {"message", "type", "param", "code"}} with the right status, so the
official client raises its own exception types (BadRequestError, AuthenticationError, NotFoundError, ...)."""

from __future__ import annotations

from typing import Any

TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
         405: "invalid_request_error", 408: "timeout_error", 413: "invalid_request_error", 429: "rate_limit_error",
         503: "overloaded_error"}


class APIError(Exception):
    """An answer other than 200: raised anywhere in a request, turned into OpenAI's error body by app.py."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, param=self.param, code=self.code)


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": TYPES.get(status, "server_error" if status >= 500 else
                                                            "invalid_request_error"),
                      "param": param, "code": code}}


def invalid(param: str, message: str, code: str = "invalid_value") -> APIError:
    """A 400 for one field of the request, naming it."""
    return APIError(400, f"{param}: {message}", param=param, code=code)
