"""Domain errors that services raise without knowing gRPC; the bootstrap maps each to a status code."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: ``field`` is a path such as ``texts[3]`` or ``conversations[2].messages``."""

    field: str
    description: str


#: google.rpc.ErrorInfo.domain of every error this project's services send.
ERROR_DOMAIN = "briefxai"


class ServiceError(Exception):
    """Base of the errors a servicer may raise; ``code_name`` is the gRPC status code's name."""

    code_name = "UNKNOWN"


class RetryableError(ServiceError):
    """An error the caller may retry: sent with google.rpc ErrorInfo and, when known, RetryInfo.

    ``reason`` is ErrorInfo's UPPER_SNAKE_CASE reason (what went wrong, stable for programs to branch
    on); ``retry_after_seconds`` becomes RetryInfo.retry_delay (None sends no RetryInfo);
    ``metadata`` adds ErrorInfo key/value context.
    """

    default_reason = "UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        retry_after_seconds: float | None = 1.0,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason or self.default_reason
        self.retry_after_seconds = retry_after_seconds
        self.metadata = dict(metadata or {})


class InvalidArgument(ServiceError):
    """The request is malformed; lists every field at fault."""

    code_name = "INVALID_ARGUMENT"

    def __init__(self, field: str, description: str) -> None:
        self.violations: list[FieldViolation] = [FieldViolation(field, description)]
        super().__init__(f"{field}: {description}")

    @classmethod
    def many(cls, violations: Iterable[tuple[str, str]]) -> InvalidArgument:
        items = [FieldViolation(field, description) for field, description in violations]
        if not items:
            raise ValueError("InvalidArgument.many needs at least one violation")
        error = cls(items[0].field, items[0].description)
        error.violations = items
        error.args = ("; ".join(f"{v.field}: {v.description}" for v in items),)
        return error


class NotFound(ServiceError):
    code_name = "NOT_FOUND"


class AlreadyExists(ServiceError):
    code_name = "ALREADY_EXISTS"


class FailedPrecondition(ServiceError):
    code_name = "FAILED_PRECONDITION"


class ResourceExhausted(RetryableError):
    """Backpressure: the caller should retry later."""

    code_name = "RESOURCE_EXHAUSTED"
    default_reason = "CAPACITY_EXCEEDED"


class Unavailable(RetryableError):
    """A retryable fault, typically a dependency that is down."""

    code_name = "UNAVAILABLE"
    default_reason = "SERVICE_UNAVAILABLE"


class DeadlineExceeded(ServiceError):
    code_name = "DEADLINE_EXCEEDED"


class Unauthenticated(ServiceError):
    """No credential, or one that is unknown, expired, revoked or locked out."""

    code_name = "UNAUTHENTICATED"


class PermissionDenied(ServiceError):
    """The caller is known but its role does not allow the call."""

    code_name = "PERMISSION_DENIED"
