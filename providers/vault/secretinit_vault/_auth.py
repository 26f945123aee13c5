"""Getting a token: given (VAULT_TOKEN, a token file) or by logging in.

Credentials are read from files when the first fetch needs them, so that
they can come from Docker secrets or a Kubernetes volume, and never appear in
a message: every credential read is remembered in ``secrets`` so that a
server's error text that echoes one can be scrubbed.
"""

from __future__ import annotations

import re
from typing import Any

import hvac.exceptions  # type: ignore[import-untyped]

from secretinit import AccessDenied, FetchError
from secretinit_vault._client import scrubbed, vault_error, vault_reason
from secretinit_vault._log import debug
from secretinit_vault._settings import VaultSettings

METHOD_NAMES = {"approle": "AppRole", "kubernetes": "Kubernetes", "jwt": "JWT"}


class Login:
    """The token of this run, and whether secretinit created it (and so must revoke it)."""

    def __init__(self, settings: VaultSettings) -> None:
        self.settings = settings
        self.secrets: list[str] = []
        self.logged_in = False
        self.auth: dict[str, Any] = {}  # the last login's auth object (never logged)
        self._secret_id: str | None = None  # a wrapping token unwraps only once: keep the result

    def token(self, client: Any) -> str:
        """The token to read with; logs in first for approle, kubernetes and jwt."""
        settings = self.settings
        if settings.auth == "token":
            source = "VAULT_TOKEN" if settings.token else f"the token file {settings.token_file}"
            debug(f"vault: reading with the token from {source}", "vault_token")
            token = settings.token or self._read(settings.token_file, "token file")
            self.secrets.append(token)
            return token
        mount = settings.auth_mount
        method = METHOD_NAMES[settings.auth]
        debug(f"vault: logging in with {method} at auth/{mount}", "vault_login", mount=mount)
        if settings.auth == "approle":
            role_id = settings.role_id or self._read(settings.role_id_file, "AppRole role id file")
            secret_id = self._approle_secret_id(client)
            self.secrets += [role_id, secret_id or ""]
            response = self._call(
                "AppRole login",
                client.auth.approle.login,
                role_id=role_id,
                secret_id=secret_id,
                use_token=False,
                mount_point=mount,
            )
        else:
            jwt = self._read(settings.jwt_file, f"{settings.auth} token file")
            self.secrets.append(jwt)
            if settings.auth == "kubernetes":
                response = self._call(
                    "Kubernetes login",
                    client.auth.kubernetes.login,
                    role=settings.role,
                    jwt=jwt,
                    use_token=False,
                    mount_point=mount,
                )
            else:
                response = self._call(
                    "JWT login", client.auth.jwt.jwt_login, settings.role, jwt, False, mount
                )
        try:
            token = str(response["auth"]["client_token"])
        except (TypeError, KeyError):
            raise FetchError(f"{settings.auth} login at auth/{mount} returned no token") from None
        self.secrets.append(token)
        self.logged_in = True
        auth = response["auth"]
        self.auth = auth  # its TTL and renewability, for a refresh series to keep it
        policies = ", ".join(str(p) for p in auth.get("policies") or []) or "none"
        debug(
            f"vault: logged in with {method} at auth/{mount}: a token of "
            f"{auth.get('lease_duration', 0)} s, policies {policies}",
            "vault_logged_in",
            mount=mount,
        )
        return token

    def check_wrapped_secret_id(self, client: Any) -> str:
        """What ``check`` can say of a wrapped secret id without unwrapping it.

        Reads both files, then asks ``sys/wrapping/lookup``, which does not
        use the wrapping token up: it fails for one already unwrapped or
        expired, and names the path that created it, which must be this
        AppRole mount's ``secret-id`` endpoint (Vault's advice before any
        unwrap: a token from elsewhere may have been substituted).
        """
        settings = self.settings
        if settings.role_id is None:
            self.secrets.append(self._read(settings.role_id_file, "AppRole role id file"))
        wrapping = self._read(settings.secret_id_file, "AppRole secret id file")
        self.secrets.append(wrapping)
        where = f"the wrapping token in {settings.secret_id_file}"
        debug(f"vault: check: looking up {where} (sys/wrapping/lookup)", "vault_wrap_lookup")
        response = self._call(
            f"looking up {where}",
            client.adapter.post,
            "/v1/sys/wrapping/lookup",
            json={"token": wrapping},
            refused_as="was refused",
        )
        data = response.get("data") if isinstance(response, dict) else None
        path = str((data or {}).get("creation_path", ""))
        mount = re.escape(settings.auth_mount)
        if not re.fullmatch(rf"auth/{mount}/role/[^/]+/secret-id", path):
            raise AccessDenied(
                f"{where} was not made by auth/{settings.auth_mount}/role/NAME/secret-id "
                f"but by {path or 'an unknown path'}: it does not hold this role's secret id"
            )
        ttl = (data or {}).get("creation_ttl")
        return f"{where}: valid, unused, made by {path}, TTL {ttl} s"

    def _approle_secret_id(self, client: Any) -> str | None:
        settings = self.settings
        if settings.secret_id_file is None:
            return None  # a role with bind_secret_id = false
        if self._secret_id is not None:
            return self._secret_id
        text = self._read(settings.secret_id_file, "AppRole secret id file")
        if not settings.secret_id_wrapped:
            return text
        self.secrets.append(text)
        # The file holds a wrapping token: authenticate as it and unwrap. A token
        # that is already used means someone else may have unwrapped it first.
        debug(
            f"vault: unwrapping the AppRole secret id in {settings.secret_id_file}", "vault_unwrap"
        )
        client.token = text
        try:
            response = self._call(
                f"unwrapping the secret id in {settings.secret_id_file}", client.sys.unwrap
            )
        finally:
            client.token = ""
        try:
            self._secret_id = str(response["data"]["secret_id"])
        except (TypeError, KeyError):
            raise FetchError(
                f"the wrapped response in {settings.secret_id_file} holds no secret_id"
            ) from None
        self.secrets.append(self._secret_id)
        return self._secret_id

    def _call(
        self,
        what: str,
        function: Any,
        *args: Any,
        refused_as: str = "",
        **kwargs: Any,
    ) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as err:
            error = vault_error(err, what, self.settings.address)
            if not error.transient and isinstance(err, hvac.exceptions.VaultError):
                # Whatever Vault answers a login (400, 403, 404), the credentials
                # or the auth method's configuration are at fault.
                refused = refused_as or f"at auth/{self.settings.auth_mount} was refused"
                error = AccessDenied(f"{what} {refused}: {vault_reason(err)}")
            raise scrubbed(error, self.scrub) from None

    def scrub(self, text: str) -> str:
        """``text`` without any credential this login has read."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            if len(secret) >= 4:
                text = text.replace(secret, "[redacted]")
        return text

    @staticmethod
    def _read(path: str | None, what: str) -> str:
        if path is None:
            raise FetchError(f"no {what} is configured")
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read().strip()
        except FileNotFoundError:
            raise FetchError(f"{what} {path} does not exist") from None
        except PermissionError:
            raise AccessDenied(f"{what} {path} is not readable: permission denied") from None
        except (OSError, UnicodeDecodeError) as err:
            raise FetchError(f"{what} {path} cannot be read: {type(err).__name__}") from None
        if not text:
            raise FetchError(f"{what} {path} is empty")
        return text
