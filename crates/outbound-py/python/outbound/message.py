"""``MailMessage``, the seeds' message, and ``Receipt``, what a successful send returns."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ._errors import InvalidMessageError

__all__ = ["MailMessage", "Receipt", "RejectedRecipient", "Addresses", "AttachmentLike"]

#: One address, or a list of them.
Addresses = Union[str, Sequence[str]]
#: A path, or ``(filename, bytes, content_type)`` (content type ``None``: guessed from the name).
AttachmentLike = Union[str, "os.PathLike[str]", Tuple[str, bytes, Optional[str]]]


def _addresses(value: Optional[Addresses]) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(a) for a in value]


@dataclass
class MailMessage:
    """An email, with the seeds' field names: ``to`` (one address or a list), ``subject``,
    ``html``, ``from_``, ``cc``, ``bcc``, ``reply_to``; also ``text``, ``attachments`` (paths or
    ``(filename, bytes, content_type)``) and extra ``headers``.

    An empty ``to``, ``subject`` or ``html`` raises ``ValueError`` naming the field. Everything
    else (addresses, header injection, header names) is checked by the library when the message
    is sent, and raises ``InvalidMessageError``, a ``ValueError`` too.
    """

    to: Addresses
    subject: str
    html: str
    from_: Optional[str] = None
    cc: Optional[List[str]] = None
    bcc: Optional[List[str]] = None
    reply_to: Optional[Addresses] = None
    text: Optional[str] = None
    attachments: Optional[List[AttachmentLike]] = None
    headers: Optional[Mapping[str, str]] = None

    def __post_init__(self) -> None:
        if not _addresses(self.to) or not all(a.strip() for a in _addresses(self.to)):
            raise InvalidMessageError(f"MailMessage.to is required (got {self.to!r})")
        if not self.subject or not str(self.subject).strip():
            raise InvalidMessageError(f"MailMessage.subject is required (got {self.subject!r})")
        if not self.html or not str(self.html).strip():
            raise InvalidMessageError(f"MailMessage.html is required (got {self.html!r})")

    @property
    def recipients(self) -> List[str]:
        """``to``, ``cc`` and ``bcc``, as lists."""
        return _addresses(self.to) + _addresses(self.cc) + _addresses(self.bcc)

    def _native_fields(self) -> Dict[str, Any]:
        attachments: List[Any] = []
        for a in self.attachments or []:
            if isinstance(a, tuple):
                name, content, content_type = a[0], a[1], (a[2] if len(a) > 2 else None)
                attachments.append((str(name), bytes(content), content_type))
            else:
                attachments.append(os.fspath(a))
        return {
            "to": _addresses(self.to),
            "subject": self.subject,
            "html": self.html,
            "text": self.text,
            "from_": self.from_ or None,
            "cc": _addresses(self.cc),
            "bcc": _addresses(self.bcc),
            "reply_to": _addresses(self.reply_to),
            "headers": [(str(k), str(v)) for k, v in (self.headers or {}).items()],
            "attachments": attachments,
        }


@dataclass(frozen=True)
class RejectedRecipient:
    """A recipient the server refused while accepting others."""

    address: str
    code: int
    enhanced_code: Optional[str]
    text: str


@dataclass(frozen=True)
class Receipt:
    """What a successful send returns: the transport kind, the Message-ID, the provider's id,
    accepted and rejected recipients, attempts and elapsed seconds."""

    transport: str
    message_id: str
    provider_id: Optional[str]
    accepted: List[str]
    rejected: List[RejectedRecipient] = field(default_factory=list)
    attempts: int = 1
    elapsed: float = 0.0

    @classmethod
    def _from_native(cls, d: Mapping[str, Any]) -> "Receipt":
        return cls(
            transport=d["transport"],
            message_id=d["message_id"],
            provider_id=d["provider_id"],
            accepted=list(d["accepted"]),
            rejected=[RejectedRecipient(**r) for r in d["rejected"]],
            attempts=d["attempts"],
            elapsed=d["elapsed"],
        )
