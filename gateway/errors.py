"""The error hierarchy and the one JSON error body.

ApiError                      -> {"error": {"code", "message", "details"}} with .status
 ├── BadRequest               400  malformed JSON or form
 ├── Unauthorized             401  missing or unknown key
 ├── Forbidden                403  key of the wrong kind, bad webhook signature
 ├── NotFound                 404  unknown route or object (also another tenant's object)
 ├── RequestTimeout           408  the request body did not arrive in time
 ├── Conflict                 409  state conflict (channel not configured, number taken…)
 ├── PayloadTooLarge          413
 ├── UnsupportedMediaType     415
 ├── ValidationFailed         422  invalid fields, each named in details.fields
 ├── RateLimited              429  with Retry-After
 └── ProviderUnavailable      502/503

ConfigError                   a setting is missing or malformed: start-up stops with one line
"""

from __future__ import annotations

from typing import Any


class ConfigError(Exception):
    """A setting is missing or malformed; raised at start-up, printed as one line."""


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


def concurrent_change() -> Conflict:
    """What a write refused by a constraint answers when the request's own checks passed: the
    state changed while it ran (the tenant was deleted, a row it names was removed, a twin
    request wrote first). The write's transaction was rolled back."""
    return Conflict(
        "This request conflicts with a change made while it ran (something it refers to was "
        "removed or written meanwhile); nothing of it was saved. Check and try again.",
        code="concurrent_change",
    )


class RequestTimeout(ApiError):
    status = 408
    code = "request_timeout"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class ValidationFailed(ApiError):
    status = 422
    code = "validation_failed"

    def __init__(self, fields: list[dict[str, str]], message: str | None = None) -> None:
        names = ", ".join(f["field"] for f in fields) or "body"
        super().__init__(message or f"Invalid fields: {names}", details={"fields": fields})

    @classmethod
    def one(cls, field: str, message: str) -> ValidationFailed:
        return cls([{"field": field, "message": message}])


class RateLimited(ApiError):
    status = 429
    code = "rate_limited"


class ProviderUnavailable(ApiError):
    status = 502
    code = "provider_unavailable"


class ServiceUnavailable(ApiError):
    status = 503
    code = "service_unavailable"
