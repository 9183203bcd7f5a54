"""The ``MailSender`` protocol and ``OutboundSender``, the sender every built-in kind uses."""

from __future__ import annotations

import logging
from typing import Any, Optional, Protocol, runtime_checkable

from . import _native
from ._blocking import run_blocking
from ._errors import MailError
from .message import MailMessage, Receipt

__all__ = ["MailSender", "OutboundSender"]

logger = logging.getLogger("outbound")


@runtime_checkable
class MailSender(Protocol):
    """What every sender offers (the seeds' protocol)."""

    def send(self, message: MailMessage) -> None:
        """Send an email message."""
        ...

    def is_configured(self) -> bool:
        """Check if the sender is properly configured."""
        ...

    def test_connection(self) -> bool:
        """Test the connection to the mail service (sends nothing)."""
        ...


class OutboundSender:
    """A sender over one transport of the Outbound library (SMTP, Resend, SendGrid, Graph,
    file, memory).

    The transport, with its connection pool and OAuth2 token cache, lives as long as this
    object: keep one sender and reuse it. Safe to share between threads and greenlets.
    """

    def __init__(self, native: "_native.NativeTransport") -> None:
        self._native = native

    @property
    def mail_type(self) -> str:
        """The transport kind: ``smtp``, ``resend``, ``sendgrid``, ``graph``, ``file``..."""
        return self._native.kind

    def send(self, message: MailMessage) -> None:
        """Send ``message``; raises a ``MailError`` subclass on failure."""
        self.deliver(message)

    def deliver(self, message: MailMessage) -> Receipt:
        """Send ``message`` and return the receipt (Message-ID, accepted and rejected
        recipients, provider id, attempts)."""
        fields = message._native_fields()
        return Receipt._from_native(run_blocking(self._native.send, **fields))

    def is_configured(self) -> bool:
        """Always true: a sender that could be built is configured (building fails with
        ``MailConfigError`` otherwise)."""
        return True

    def verify(self) -> None:
        """Connect and authenticate (or check the API key) without sending; raises the typed
        error (``MailAuthError``, ``MailConnectionError``, ...) on failure."""
        run_blocking(self._native.verify)

    def test_connection(self) -> bool:
        """``verify()`` as a bool: False on failure, with the reason logged as a warning."""
        try:
            self.verify()
        except MailError as e:
            logger.warning("connection test failed for %s: %s", self.describe(), e)
            return False
        return True

    def close(self) -> None:
        """Close pooled connections politely; the sender stays usable."""
        run_blocking(self._native.close)

    def describe(self) -> str:
        """Where mail goes, without secrets, e.g. ``smtp://127.0.0.1:587 (starttls, as alice)``."""
        return self._native.describe()

    def __enter__(self) -> "OutboundSender":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<OutboundSender {self.describe()}>"


def _from_native(native: Optional["_native.NativeTransport"]) -> Optional[OutboundSender]:
    return None if native is None else OutboundSender(native)
