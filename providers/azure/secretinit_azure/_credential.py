"""Which Azure credential to use, and a wrapper that makes its token a shared one.

``azure-identity`` credentials cache their tokens, but two requests started at
once on an empty cache each fetch one (eight concurrent reads on a fresh
``DefaultAzureCredential`` fetched two or three), and some credentials cache
nothing (``AzureCliCredential`` runs ``az`` each time). The wrapper lets one
request through at a time and reuses each token until it nears expiry, so a
run fetches one token however many vaults and secrets it reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from secretinit import AccessDenied

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
    from azure.identity import (
        AzureCliCredential,
        AzureDeveloperCliCredential,
        DefaultAzureCredential,
        EnvironmentCredential,
        ManagedIdentityCredential,
        WorkloadIdentityCredential,
    )

    AnyCredential = (
        DefaultAzureCredential
        | EnvironmentCredential
        | WorkloadIdentityCredential
        | ManagedIdentityCredential
        | AzureCliCredential
        | AzureDeveloperCliCredential
    )

# The values of [providers.azure] credential, and the class each one pins.
CREDENTIALS = {
    "default": "DefaultAzureCredential",
    "environment": "EnvironmentCredential",
    "workload-identity": "WorkloadIdentityCredential",
    "managed-identity": "ManagedIdentityCredential",
    "azure-cli": "AzureCliCredential",
    "azure-developer-cli": "AzureDeveloperCliCredential",
}
# A token this close to its expiry is fetched again (azure-core's own margin).
REFRESH_MARGIN = 300


def make_credential(kind: str, environ: Mapping[str, str]) -> AnyCredential:
    """The credential of ``kind`` (a key of :data:`CREDENTIALS`), configured from ``environ``.

    Raises :class:`AccessDenied` when the credential lacks what it needs.
    """
    import azure.identity

    try:
        if kind == "managed-identity":
            # DefaultAzureCredential reads AZURE_CLIENT_ID for a user-assigned
            # identity; ManagedIdentityCredential alone only takes an argument.
            client_id = environ.get("AZURE_CLIENT_ID")
            return azure.identity.ManagedIdentityCredential(client_id=client_id)
        credential: AnyCredential = getattr(azure.identity, CREDENTIALS[kind])()
    except ValueError as err:
        # WorkloadIdentityCredential, for one, refuses to be built without its variables.
        raise AccessDenied(f"the {kind} credential cannot be used here: {err}") from None
    return credential


class SharedTokenCredential:
    """A credential that fetches each token once, serialised, and reuses it."""

    def __init__(self, credential: AnyCredential) -> None:
        self.credential = credential
        self._lock = threading.Lock()
        self._tokens: dict[tuple[Any, ...], AccessTokenInfo] = {}

    def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        """A token for ``scopes``: the cached one while it is fresh, else a new one."""
        options = options or {}
        key = (scopes, options.get("tenant_id"), options.get("enable_cae", False))
        with self._lock:
            token = self._tokens.get(key)
            # A claims challenge (continuous access evaluation) wants a new token.
            if token is None or options.get("claims") or not _fresh(token):
                token = self.credential.get_token_info(*scopes, options=options)
                self._tokens[key] = token
            return token

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **_kwargs: Any,
    ) -> AccessToken:
        """The ``TokenCredential`` form of :meth:`get_token_info`."""
        from azure.core.credentials import AccessToken

        options: TokenRequestOptions = {"enable_cae": enable_cae}
        if claims:
            options["claims"] = claims
        if tenant_id:
            options["tenant_id"] = tenant_id
        info = self.get_token_info(*scopes, options=options)
        return AccessToken(info.token, info.expires_on)

    def close(self) -> None:
        """Close the wrapped credential and forget its tokens."""
        self._tokens.clear()
        self.credential.close()


def _fresh(token: AccessTokenInfo) -> bool:
    now = time.time()
    if token.refresh_on is not None and token.refresh_on <= now:
        return False
    return token.expires_on - now > REFRESH_MARGIN
