"""``MicrosoftEmailOAuth``: Microsoft Entra ID tokens (the seeds' ``libs.mail.oauth_email``)."""

from __future__ import annotations

from typing import Any, Dict, Optional
from urllib.parse import urlencode

from . import _native
from ._blocking import run_blocking

__all__ = ["MicrosoftEmailOAuth", "OUTLOOK_SCOPE", "MICROSOFT_AUTHORITY"]

#: App-only SMTP (XOAUTH2) against Exchange Online needs this scope (and ``SMTP.SendAsApp``).
OUTLOOK_SCOPE = "https://outlook.office365.com/.default"
#: Delegated SMTP: the user's consent to send, and a refresh token.
DELEGATED_SMTP_SCOPE = "https://outlook.office.com/SMTP.Send offline_access"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"


class MicrosoftEmailOAuth:
    """Tokens for an Entra ID application.

    ``get_access_token_client_credentials()`` uses the library's process-wide, single-flight
    token cache: a token is requested once and reused until shortly before it expires, however
    many senders and threads ask. ``authority`` selects a national cloud (or a test server).
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        redirect_uri: str = "",
        tenant_id: str = "common",
        authority: Optional[str] = None,
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.tenant_id = tenant_id or "common"
        self.authority = (authority or MICROSOFT_AUTHORITY).rstrip("/")
        self._sources: Dict[str, Any] = {}

    def _client_credentials(self, scope: str) -> Any:
        source = self._sources.get(scope)
        if source is None:
            source = _native.NativeTokenSource.microsoft_client_credentials(
                self.tenant_id, self.client_id, self._client_secret, scope, self.authority
            )
            self._sources[scope] = source
        return source

    def get_access_token_client_credentials(self, scope: str = OUTLOOK_SCOPE) -> Dict[str, Any]:
        """A current app-only token: ``{"access_token", "token_type", "expires_in", "scope"}``
        (``expires_in``: seconds left). Raises ``MailAuthError`` for a wrong secret,
        ``MailConfigError`` for an unknown tenant or application."""
        return dict(run_blocking(self._client_credentials(scope).get))

    def get_authorization_url(self, state: Optional[str] = None, scope: str = DELEGATED_SMTP_SCOPE) -> str:
        """Where to send a user to consent (authorization-code flow, with ``redirect_uri``)."""
        query = {
            "client_id": self.client_id,
            "response_type": "code",
            "redirect_uri": self.redirect_uri,
            "response_mode": "query",
            "scope": scope,
        }
        if state is not None:
            query["state"] = state
        return f"{self.authority}/{self.tenant_id}/oauth2/v2.0/authorize?{urlencode(query)}"

    def exchange_code_for_token(self, code: str, scope: str = DELEGATED_SMTP_SCOPE) -> Dict[str, Any]:
        """Redeem the code the redirect brought back (authorization-code flow): the token dict
        plus ``refresh_token`` when Microsoft issued one (scope ``offline_access``)."""
        return dict(
            run_blocking(
                _native.NativeTokenSource.redeem_microsoft_code,
                self.tenant_id,
                self.client_id,
                self._client_secret,
                code,
                self.redirect_uri,
                scope,
                self.authority,
            )
        )

    def refresh_access_token(self, refresh_token: str, scope: str = DELEGATED_SMTP_SCOPE) -> Dict[str, Any]:
        """A new access token from a refresh token (delegated account), same dict shape."""
        source = _native.NativeTokenSource.microsoft_refresh_token(
            self.tenant_id, self.client_id, self._client_secret, refresh_token, scope, self.authority
        )
        return dict(run_blocking(source.get))

    def __repr__(self) -> str:
        return (
            f"MicrosoftEmailOAuth(client_id={self.client_id!r}, tenant_id={self.tenant_id!r}, "
            f"authority={self.authority!r})"
        )
