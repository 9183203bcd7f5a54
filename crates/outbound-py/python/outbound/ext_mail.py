"""``Mail``: the surface of Dify's ``extensions/ext_mail.py`` (``init_app``, ``is_inited``,
``send``), over ``MailSenderFactory.create_from_dify_config``."""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

from .factory import MailSenderFactory, _dify_variables
from .smtp import DictMailClient

__all__ = ["Mail"]

logger = logging.getLogger("outbound")


class Mail:
    """Dify's mail extension. ``init_app(app, config)`` reads Dify's variables from ``config``
    (``dify_config``, any object or mapping), else from ``app.config``, else from the
    environment. ``_client.send(dict)`` works as in the seeds' Basic Usage."""

    def __init__(self) -> None:
        self._client: Optional[DictMailClient] = None
        self._default_send_from: Optional[str] = None

    def is_inited(self) -> bool:
        return self._client is not None

    def init_app(self, app: Any = None, config: Any = None) -> None:
        if config is None:
            config = getattr(app, "config", None)
        if config is None:
            config = os.environ
        variables = _dify_variables(config)
        if not variables.get("MAIL_TYPE") and not variables.get("MAILER_DSN"):
            logger.warning("MAIL_TYPE is not set")
            return
        self._default_send_from = variables.get("MAIL_DEFAULT_SEND_FROM") or None
        sender = MailSenderFactory.create_from_dify_config(variables)
        if sender is None:
            return
        self._client = DictMailClient(sender, self._default_send_from)

    def send(self, to: Any, subject: str, html: str, from_: Optional[str] = None) -> None:
        if self._client is None:
            raise ValueError("Mail client is not initialized")
        from_ = from_ or self._default_send_from
        if not from_:
            raise ValueError("mail from is not set")
        if not to:
            raise ValueError("mail to is not set")
        if not subject:
            raise ValueError("mail subject is not set")
        if not html:
            raise ValueError("mail html is not set")
        self._client.send({"from": from_, "to": to, "subject": subject, "html": html})


#: A ready instance, like Dify's ``extensions.ext_mail.mail``.
mail = Mail()
