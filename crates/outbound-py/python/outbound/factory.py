"""``MailSenderFactory``: senders from the seeds' config dicts or Dify's configuration."""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from . import _native
from ._errors import MailConfigError
from .sender import MailSender, OutboundSender

__all__ = ["MailSenderFactory"]

# The variables Dify and Outbound read (MAIL_TYPE, SMTP_*, RESEND_*, ...). The library decides
# what each one means; this only picks them out of a config object.
_DIFY_VARIABLE = re.compile(r"^(MAIL|MAILER|SMTP|RESEND|SENDGRID|MICROSOFT)_[A-Z0-9_]+$")

SenderClass = Callable[[Dict[str, Any]], MailSender]


def _setting(value: Any) -> Optional[str]:
    """A config value as the library reads it (``True`` is ``true``); None for unset."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, os.PathLike):
        return str(os.fspath(value))
    return str(value)


def _dify_variables(dify_config: Any) -> Dict[str, str]:
    """Dify's (and Outbound's) variables from a mapping or any object with those attributes."""
    if isinstance(dify_config, Mapping):
        items = list(dify_config.items())
    else:
        items = []
        for name in dir(dify_config):
            if _DIFY_VARIABLE.match(name):
                try:
                    items.append((name, getattr(dify_config, name)))
                except Exception:  # a computed attribute that fails is not a setting
                    continue
    out: Dict[str, str] = {}
    for name, value in items:
        if isinstance(name, str) and _DIFY_VARIABLE.match(name) and not callable(value):
            text = _setting(value)
            if text is not None:
                out[name] = text
    return out


class MailSenderFactory:
    """Creates senders (the seeds' factory). Built-in kinds are the library's
    (``get_supported_types()``); ``register_sender`` adds Python classes."""

    _registry: Dict[str, SenderClass] = {}

    @classmethod
    def create_sender(cls, mail_type: str, config: Mapping[str, Any]) -> MailSender:
        """A sender of ``mail_type`` from the seeds' keys (``server, port, username, password,
        use_tls, opportunistic_tls, auth_type, oauth2_provider, client_id, client_secret,
        tenant_id, default_from, api_key``) and Outbound's own (``timeout, ca_file, tls_verify,
        pool_size, retries, rate, authority, api_url, ...``). ``{"dsn": "smtp://..."}`` takes a
        DSN instead. Unknown keys and bad values raise ``MailConfigError`` naming the key."""
        kind = (mail_type or "").strip().lower()
        custom = cls._registry.get(kind)
        if custom is not None:
            return custom(dict(config))
        settings: Dict[str, str] = {}
        for key, value in dict(config).items():
            text = _setting(value)
            if text is not None:
                settings[str(key)] = text
        dsn = settings.pop("dsn", None)
        if dsn is not None:
            env: Dict[str, str] = {}
            if "default_from" in settings:
                env["MAIL_DEFAULT_SEND_FROM"] = settings.pop("default_from")
            if settings:
                raise MailConfigError(
                    f"with `dsn` the only other key may be `default_from`; got {sorted(settings)}",
                    kind="config",
                )
            native = _native.NativeTransport.from_dsn(dsn, env)
            if native.kind != kind and kind:
                raise MailConfigError(
                    f"mail_type is `{kind}` but the DSN is for `{native.kind}`", kind="config"
                )
            return OutboundSender(native)
        return OutboundSender(_native.NativeTransport.create(kind, list(settings.items())))

    @classmethod
    def create_from_dify_config(cls, dify_config: Any) -> Optional[MailSender]:
        """A sender from Dify's configuration: an object with Dify's attribute names
        (``MAIL_TYPE``, ``SMTP_SERVER``, ..., both OAuth spellings, and Outbound's own such as
        ``SMTP_TLS_CA_FILE``), or a mapping such as ``os.environ``. None when MAIL_TYPE (and
        MAILER_DSN) is empty."""
        variables = _dify_variables(dify_config)
        kind = variables.get("MAIL_TYPE", "").strip().lower()
        custom = cls._registry.get(kind)
        if custom is not None and "MAILER_DSN" not in variables:
            return custom(dict(variables))
        native = _native.NativeTransport.from_env(variables)
        return None if native is None else OutboundSender(native)

    @classmethod
    def get_supported_types(cls) -> List[str]:
        """Every mail type ``create_sender`` accepts: the library's and the registered ones."""
        return sorted(set(_native.supported_types()) | set(cls._registry))

    @classmethod
    def register_sender(cls, mail_type: str, sender_class: Union[type, SenderClass]) -> None:
        """Plug in a Python sender: ``create_sender(mail_type, config)`` then returns
        ``sender_class(config)``. It may replace a built-in kind."""
        if not callable(sender_class):
            raise TypeError("sender_class must be a class (or callable) taking the config dict")
        cls._registry[mail_type.strip().lower()] = sender_class
