"""Type stubs for the compiled core ``outbound._native`` (see src/ in the crate)."""

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

__version__: str

_Attachment = Union[str, Tuple[str, bytes, Optional[str]]]

class NativeTransport:
    @staticmethod
    def create(kind: str, settings: Sequence[Tuple[str, str]]) -> "NativeTransport": ...
    @staticmethod
    def from_dsn(dsn: str, env: Optional[Mapping[str, str]] = None) -> "NativeTransport": ...
    @staticmethod
    def from_env(env: Mapping[str, str]) -> Optional["NativeTransport"]: ...
    @property
    def kind(self) -> str: ...
    def describe(self) -> str: ...
    def send(
        self,
        *,
        to: Sequence[str],
        subject: str,
        html: Optional[str] = None,
        text: Optional[str] = None,
        from_: Optional[str] = None,
        cc: Sequence[str] = ...,
        bcc: Sequence[str] = ...,
        reply_to: Sequence[str] = ...,
        headers: Sequence[Tuple[str, str]] = ...,
        attachments: Sequence[_Attachment] = ...,
    ) -> Dict[str, Any]: ...
    def verify(self) -> None: ...
    def close(self) -> None: ...

class NativeTokenSource:
    @staticmethod
    def microsoft_client_credentials(
        tenant: str, client_id: str, client_secret: str, scope: str, authority: Optional[str] = None
    ) -> "NativeTokenSource": ...
    @staticmethod
    def microsoft_refresh_token(
        tenant: str,
        client_id: str,
        client_secret: Optional[str],
        refresh_token: str,
        scope: str,
        authority: Optional[str] = None,
    ) -> "NativeTokenSource": ...
    @staticmethod
    def redeem_microsoft_code(
        tenant: str,
        client_id: str,
        client_secret: Optional[str],
        code: str,
        redirect_uri: str,
        scope: str,
        authority: Optional[str] = None,
    ) -> Dict[str, Any]: ...
    def get(self) -> Dict[str, Any]: ...
    def invalidate(self) -> bool: ...
    def describe(self) -> str: ...

def supported_types() -> List[str]: ...
def runtime_pid() -> int: ...
