"""Domain errors that services raise without knowing gRPC; the bootstrap maps each to a status code."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: ``field`` is a path such as ``texts[3]`` or ``conversations[2].messages``."""

    field: str
    description: str


class ServiceError(Exception):
    """Base of the errors a servicer may raise; ``code_name`` is the gRPC status code's name."""

    code_name = "UNKNOWN"


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


class ResourceExhausted(ServiceError):
    """Backpressure: the caller should retry later."""

    code_name = "RESOURCE_EXHAUSTED"


class Unavailable(ServiceError):
    """A retryable fault, typically a dependency that is down."""

    code_name = "UNAVAILABLE"


class DeadlineExceeded(ServiceError):
    code_name = "DEADLINE_EXCEEDED"
