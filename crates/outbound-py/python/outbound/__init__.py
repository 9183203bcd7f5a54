"""Outbound for Python: the API of Dify's mail module over the Outbound library.

    from outbound import MailMessage, MailSenderFactory

    sender = MailSenderFactory.create_sender("smtp", {"server": "smtp.example.com", ...})
    sender.send(MailMessage(to="ada@example.com", subject="Hi", html="<p>Hello</p>"))

Rust ``tracing`` events go to the ``logging`` logger ``outbound``; at DEBUG it shows the SMTP
dialogue (AUTH redacted).
"""

from . import _native
from ._errors import (
    InvalidMessageError,
    MailAmbiguousError,
    MailAuthError,
    MailConfigError,
    MailConnectionError,
    MailError,
    MailSendError,
    MailTimeoutError,
)
from .ext_mail import Mail
from .factory import MailSenderFactory
from .message import MailMessage, Receipt, RejectedRecipient
from .oauth_email import MicrosoftEmailOAuth
from .sender import MailSender, OutboundSender
from .smtp import DictMailClient, SMTPClient

__version__ = _native.__version__

__all__ = [
    "MailMessage",
    "Receipt",
    "RejectedRecipient",
    "MailSender",
    "OutboundSender",
    "MailSenderFactory",
    "MicrosoftEmailOAuth",
    "SMTPClient",
    "DictMailClient",
    "Mail",
    "MailError",
    "MailConfigError",
    "MailAuthError",
    "MailConnectionError",
    "MailTimeoutError",
    "MailSendError",
    "MailAmbiguousError",
    "InvalidMessageError",
]
