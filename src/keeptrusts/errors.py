"""Errors that reach a client, each knowing its HTTP status and OpenAI error envelope.

Every layer raises one of these; the server turns it into
``{"error": {"message", "type", "param", "code"}}`` in one place.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """An error with an HTTP status and an OpenAI-style envelope."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or {}
        self.extra = extra or {}

    def envelope(self) -> dict[str, Any]:
        """Return the OpenAI error envelope for this error."""
        err: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        err.update(self.extra)
        return {"error": err}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "target_unavailable"


class UpstreamError(GatewayError):
    """The provider answered with an error; its status is relayed."""

    type = "upstream_error"

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500


class UpstreamUnreachable(UpstreamError):
    status = 502
    code = "upstream_unreachable"

    @property
    def retryable(self) -> bool:
        return True


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"

    @property
    def retryable(self) -> bool:
        return True


class PolicyViolation(GatewayError):
    """A policy blocked the request or response. Never retried by OpenAI SDKs."""

    status = 409
    type = "policy_violation"

    def __init__(self, message: str, *, policy: str, code: str, status: int = 409) -> None:
        super().__init__(
            message,
            status=status,
            code=code,
            headers={"x-should-retry": "false"},
            extra={"policy": policy},
        )
        self.policy = policy
