"""``SMTPClient``, the seeds' (and Dify's ``libs.smtp``) dict-taking client."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from .factory import MailSenderFactory
from .message import MailMessage
from .sender import MailSender, OutboundSender

__all__ = ["SMTPClient", "DictMailClient"]


class DictMailClient:
    """Sends Dify's mail dicts (``to``, ``subject``, ``html``; ``from`` or ``_from``, ``cc``,
    ``bcc``, ``reply_to``, ``text``) through any sender."""

    def __init__(self, sender: MailSender, default_from: Optional[str] = None) -> None:
        self.sender = sender
        self.default_from = default_from

    def send(self, mail: Mapping[str, Any]) -> None:
        sender_address = mail.get("from") or mail.get("_from") or mail.get("from_") or self.default_from
        message = MailMessage(
            to=mail.get("to", ""),
            subject=mail.get("subject", ""),
            html=mail.get("html", ""),
            from_=sender_address,
            cc=mail.get("cc"),
            bcc=mail.get("bcc"),
            reply_to=mail.get("reply_to"),
            text=mail.get("text"),
            attachments=mail.get("attachments"),
            headers=mail.get("headers"),
        )
        self.sender.send(message)

    def test_connection(self) -> bool:
        return self.sender.test_connection()

    def close(self) -> None:
        close = getattr(self.sender, "close", None)
        if close is not None:
            close()


class SMTPClient(DictMailClient):
    """The seeds' SMTP client: ``SMTPClient(server, port, username, password, from_addr,
    use_tls=False, opportunistic_tls=False, oauth_access_token=None, auth_type="basic")``.
    Dify's spelling ``_from=`` is accepted for ``from_addr``; Outbound's own keys (``ca_file``,
    ``timeout``, ``pool_size``, ...) may follow as keywords.

    ``use_tls=True`` alone is implicit TLS (port 465); with ``opportunistic_tls=True`` it is
    STARTTLS, required (port 587); ``use_tls=False`` is plain SMTP. One client keeps its
    connections open between sends.
    """

    def __init__(
        self,
        server: str,
        port: int,
        username: str = "",
        password: str = "",
        from_addr: Optional[str] = None,
        use_tls: bool = False,
        opportunistic_tls: bool = False,
        oauth_access_token: Optional[str] = None,
        auth_type: str = "basic",
        *,
        _from: Optional[str] = None,
        **options: Any,
    ) -> None:
        config: Dict[str, Any] = {
            "server": server,
            "port": port,
            "username": username,
            "use_tls": use_tls,
            "opportunistic_tls": opportunistic_tls,
            "auth_type": auth_type or "basic",
        }
        if oauth_access_token:
            config["oauth_access_token"] = oauth_access_token
        elif password:
            config["password"] = password
        config.update(options)
        self.server = server
        self.port = port
        self.username = username
        self.from_addr = from_addr or _from
        self.use_tls = use_tls
        self.opportunistic_tls = opportunistic_tls
        self.auth_type = auth_type
        sender = MailSenderFactory.create_sender("smtp", config)
        super().__init__(sender, self.from_addr)

    @property
    def _from(self) -> Optional[str]:
        return self.from_addr

    def __repr__(self) -> str:
        desc = self.sender.describe() if isinstance(self.sender, OutboundSender) else repr(self.sender)
        return f"<SMTPClient {desc}>"
