"""Domain errors raised by services; the API maps each to one HTTP status and the envelope."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every expected failure. ``code`` is the envelope's ``error`` field."""

    code = "domain_error"
    status_code = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(DomainError):
    code = "invalid_input"
    status_code = 422


class NotFound(DomainError):
    code = "not_found"
    status_code = 404


class Conflict(DomainError):
    code = "conflict"
    status_code = 409


class InvalidTransition(Conflict):
    code = "invalid_transition"


class PayloadTooLarge(DomainError):
    code = "payload_too_large"
    status_code = 413


class UnsupportedMediaType(DomainError):
    code = "unsupported_media_type"
    status_code = 415


class NotAuthenticated(DomainError):
    code = "not_authenticated"
    status_code = 401


class Forbidden(DomainError):
    code = "forbidden"
    status_code = 403


class TooManyAttempts(DomainError):
    """Too many failed logins from the caller's address: refused, unchecked, until
    ``retry_after_seconds`` have passed."""

    code = "too_many_attempts"
    status_code = 429

    def __init__(self, detail: str, *, retry_after_seconds: int) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds


class IntegrityFailure(DomainError):
    """Stored bytes no longer match their sha256: the store has been tampered with or rotted."""

    code = "integrity_failure"
    status_code = 500


class UnvouchedRecord(IntegrityFailure):
    """On the serving path (predict), a version the service cannot vouch for: its row is not
    its audited state, or its artifact's bytes do not hash to its digest or do not load.

    409, not 500: a 5xx tells a plant client to try again (most retry policies resend 5xx
    responses), and every retry would meet the same record. Nothing resolves this but QA (a
    new version, the record restored and verified), so the answer is the request's
    conflict with the record's state, with no ``Retry-After``. Same ``code`` as
    :class:`IntegrityFailure`."""

    status_code = 409


class WouldBlock(Exception):
    """Not an HTTP error: work offered to the event loop that would have to wait there (a lock
    held, a model not yet loaded, a network database). The caller runs it in the thread pool."""
