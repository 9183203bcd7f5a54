"""The exception hierarchy: every failure the library reports, as a class a caller can catch.

``MailError`` is the root. Each exception carries what the library knows: ``kind`` (the
library's ``ErrorKind``: config, invalid_message, auth, transient, permanent, ambiguous,
timeout, tls, network), ``retryable`` (whether trying again cannot deliver twice), the SMTP
reply code and enhanced status code or the HTTP status and provider code, and the server's
own text. None of it ever holds a secret.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Type

__all__ = [
    "MailError",
    "MailConfigError",
    "MailAuthError",
    "MailConnectionError",
    "MailTimeoutError",
    "MailSendError",
    "MailAmbiguousError",
    "InvalidMessageError",
]


class MailError(Exception):
    """Root of every error this package raises."""

    kind: str = "error"
    retryable: bool = False

    def __init__(
        self,
        message: str = "",
        *,
        kind: Optional[str] = None,
        retryable: Optional[bool] = None,
        detail: Optional[str] = None,
        smtp_code: Optional[int] = None,
        enhanced_code: Optional[str] = None,
        http_status: Optional[int] = None,
        provider_code: Optional[str] = None,
        server_text: Optional[str] = None,
        retry_after: Optional[float] = None,
        setting: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if kind is not None:
            self.kind = kind
        if retryable is not None:
            self.retryable = retryable
        self.detail = detail if detail is not None else message
        self.smtp_code = smtp_code
        self.enhanced_code = enhanced_code
        self.http_status = http_status
        self.provider_code = provider_code
        self.server_text = server_text
        self.retry_after = retry_after
        self.setting = setting

    _FIELDS = ("kind", "retryable", "detail", "smtp_code", "enhanced_code", "http_status",
               "provider_code", "server_text", "retry_after", "setting")

    def __reduce__(self) -> Any:
        # Celery pickles a task's exception for its result backend: keep the attributes.
        return (_rebuild, (type(self), self.message, {f: getattr(self, f) for f in self._FIELDS}))

    @property
    def code(self) -> Optional[int]:
        """The SMTP reply code or the HTTP status, whichever the server gave."""
        return self.smtp_code if self.smtp_code is not None else self.http_status

    def __repr__(self) -> str:
        parts = [repr(self.message), f"kind={self.kind!r}", f"retryable={self.retryable!r}"]
        for name in ("smtp_code", "enhanced_code", "http_status", "provider_code", "server_text"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class MailConfigError(MailError):
    """The configuration is missing, contradictory or malformed (names the setting)."""

    kind = "config"


class MailAuthError(MailError):
    """The server refused the credentials or token, or the account may not send."""

    kind = "auth"


class MailConnectionError(MailError):
    """The server could not be reached or used securely (network or TLS) before anything was sent."""

    kind = "network"
    retryable = True


class MailTimeoutError(MailError):
    """A phase took longer than allowed before anything could have been delivered."""

    kind = "timeout"
    retryable = True


class MailSendError(MailError):
    """The server refused the message: for good (``permanent``) or for now (``transient``)."""

    kind = "permanent"


class MailAmbiguousError(MailSendError):
    """The message may have been delivered (the connection broke or timed out after the end of
    DATA, or after an HTTP body went out without an idempotency key). Do not resend blindly."""

    kind = "ambiguous"


class InvalidMessageError(MailError, ValueError):
    """The message itself is invalid (no recipient, malformed address, header injection...)."""

    kind = "invalid_message"


_BY_KIND: Dict[str, Type[MailError]] = {
    "config": MailConfigError,
    "invalid_message": InvalidMessageError,
    "auth": MailAuthError,
    "transient": MailSendError,
    "permanent": MailSendError,
    "ambiguous": MailAmbiguousError,
    "timeout": MailTimeoutError,
    "tls": MailConnectionError,
    "network": MailConnectionError,
}


def _rebuild(cls: Type[MailError], message: str, fields: Dict[str, Any]) -> MailError:
    return cls(message, **fields)


def _from_native(*, kind: str, message: str, **fields: Any) -> MailError:
    """Called by the native core for every library error."""
    cls = _BY_KIND.get(kind, MailError)
    return cls(message, kind=kind, **fields)
