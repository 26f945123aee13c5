"""The provider's settings: Vault's own variables first, then ``[providers.vault]``.

A user who knows the ``vault`` (or ``bao``) CLI finds its variables honoured
unchanged; the table is the place for what those variables cannot say (how to
log in). Everything here is local: no file is read and nothing is contacted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from secretinit import ConfigError

DEFAULT_ADDRESS = "https://127.0.0.1:8200"  # the vault CLI's default
DEFAULT_CONCURRENCY = 16
KUBERNETES_TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path

# [providers.vault] key -> the variables that set it first (Vault's, then OpenBao's).
VARIABLES: dict[str, tuple[str, ...]] = {
    "address": ("VAULT_ADDR", "BAO_ADDR"),
    "namespace": ("VAULT_NAMESPACE", "BAO_NAMESPACE"),
    "ca_cert": ("VAULT_CACERT", "BAO_CACERT"),
    "ca_path": ("VAULT_CAPATH", "BAO_CAPATH"),
    "client_cert": ("VAULT_CLIENT_CERT", "BAO_CLIENT_CERT"),
    "client_key": ("VAULT_CLIENT_KEY", "BAO_CLIENT_KEY"),
    "skip_verify": ("VAULT_SKIP_VERIFY", "BAO_SKIP_VERIFY"),
}
TOKEN_VARIABLES = ("VAULT_TOKEN", "BAO_TOKEN")

# Which keys each login method reads; a key of another method is a mistake worth reporting.
AUTH_KEYS: dict[str, frozenset[str]] = {
    "token": frozenset({"token_file"}),
    "approle": frozenset(
        {"auth_mount", "role_id", "role_id_file", "secret_id_file", "secret_id_wrapped"}
    ),
    "kubernetes": frozenset({"auth_mount", "role", "jwt_file"}),
    "jwt": frozenset({"auth_mount", "role", "jwt_file"}),
}
CONFIG_OPTIONS = frozenset(
    {*VARIABLES, "auth", "concurrency", *(key for keys in AUTH_KEYS.values() for key in keys)}
)

_TRUE = {"1", "t", "T", "true", "TRUE", "True"}  # Go's strconv.ParseBool, as Vault reads it
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


@dataclass(frozen=True)
class VaultSettings:
    """Where Vault is, how to trust it and how to log in."""

    address: str
    namespace: str | None
    verify: bool | str  # False, a CA file or directory, or True for the default bundle
    client_cert: tuple[str, str] | None
    auth: str
    token: str | None  # from VAULT_TOKEN, never from the table
    token_file: str | None  # an agent's sink, or ~/.vault-token
    auth_mount: str
    role: str | None
    role_id: str | None
    role_id_file: str | None
    secret_id_file: str | None
    secret_id_wrapped: bool
    jwt_file: str | None
    concurrency: int

    @property
    def single_use(self) -> bool:
        """Whether logging in uses up its credential (a response-wrapped secret id unwraps once)."""
        return self.auth == "approle" and self.secret_id_wrapped

    def __repr__(self) -> str:
        # The token is a credential: never let a repr carry it into a log.
        return f"VaultSettings(address={self.address!r}, auth={self.auth!r})"


def read_settings(
    options: Mapping[str, object], environ: Mapping[str, str], option_str: OptionReader
) -> VaultSettings:
    """Build the settings, reporting every problem of the table at once."""
    problems: list[str] = []

    def setting(name: str) -> str | None:
        for variable in VARIABLES.get(name, ()):
            if environ.get(variable):
                return environ[variable]
        try:
            return option_str(name)
        except ConfigError as err:
            problems.append(str(err))
            return None

    auth = setting("auth") or "token"
    if auth not in AUTH_KEYS:
        # One line: the checks that depend on the method would only add noise
        # ("no Vault token", keys "not used") about a method nobody chose.
        problems.append(f"[providers.vault] auth: {_unknown_auth(auth)}")
        raise ConfigError("the vault provider is not configured correctly:", problems)
    for key in sorted(set(options) & (CONFIG_OPTIONS - AUTH_KEYS[auth])):
        if any(key in keys for keys in AUTH_KEYS.values()):
            users = " or ".join(repr(a) for a, keys in AUTH_KEYS.items() if key in keys)
            problems.append(
                f"[providers.vault] {key}: not used with auth = {auth!r} (it is for auth = {users})"
            )
    address = (setting("address") or DEFAULT_ADDRESS).rstrip("/")
    address_problem = _address_problem(address)
    if address_problem:
        source = next((v for v in VARIABLES["address"] if environ.get(v)), None)
        where = source or "[providers.vault] address:"
        problems.append(f"{where} {address!r} {address_problem}")

    skip_verify = _parse_bool(options, environ, problems)
    ca_cert, ca_path = setting("ca_cert"), setting("ca_path")
    verify: bool | str = not skip_verify and (
        ca_cert
        or ca_path
        # requests' own variables, honoured as requests would (it no longer reads them:
        # the session ignores the environment so that no request pays for scanning it).
        or environ.get("REQUESTS_CA_BUNDLE")
        or environ.get("CURL_CA_BUNDLE")
        or True
    )
    client_cert, client_key = setting("client_cert"), setting("client_key")
    if bool(client_cert) != bool(client_key):
        problems.append("a client certificate needs both VAULT_CLIENT_CERT and VAULT_CLIENT_KEY")

    token = next((environ[v] for v in TOKEN_VARIABLES if environ.get(v)), None)
    token_file = setting("token_file")
    role, jwt_file = setting("role"), setting("jwt_file")
    role_id, role_id_file = setting("role_id"), setting("role_id_file")
    if auth == "token" and token is None and token_file is None:
        home = environ.get("HOME") or str(Path.home())
        token_file = os.path.join(home, ".vault-token")
        if not os.path.exists(token_file):
            problems.append(
                "no Vault token: set VAULT_TOKEN, [providers.vault] token_file, write "
                "~/.vault-token, or choose a login method with [providers.vault] auth"
            )
    if auth == "approle" and not (role_id or role_id_file):
        problems.append("[providers.vault] role_id_file: needed with auth = 'approle' (or role_id)")
    if auth == "kubernetes" and not role:
        problems.append("[providers.vault] role: needed with auth = 'kubernetes'")
    if auth == "jwt" and not jwt_file:
        problems.append("[providers.vault] jwt_file: needed with auth = 'jwt'")
    wrapped = options.get("secret_id_wrapped", False)
    if not isinstance(wrapped, bool):
        problems.append("[providers.vault] secret_id_wrapped: must be true or false")
    concurrency = options.get("concurrency", DEFAULT_CONCURRENCY)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        problems.append("[providers.vault] concurrency: must be a whole number of at least 1")
        concurrency = DEFAULT_CONCURRENCY
    if problems:
        raise ConfigError("the vault provider is not configured correctly:", problems)
    return VaultSettings(
        address=address,
        namespace=setting("namespace"),
        verify=verify,
        client_cert=(client_cert, client_key) if client_cert and client_key else None,
        auth=auth,
        token=token,
        token_file=token_file,
        auth_mount=(setting("auth_mount") or auth).strip("/"),
        role=role,
        role_id=role_id,
        role_id_file=role_id_file,
        secret_id_file=setting("secret_id_file"),
        secret_id_wrapped=bool(wrapped),
        jwt_file=jwt_file or (KUBERNETES_TOKEN_FILE if auth == "kubernetes" else None),
        concurrency=concurrency,
    )


OptionReader = Callable[[str], "str | None"]


def _parse_bool(
    options: Mapping[str, object], environ: Mapping[str, str], problems: list[str]
) -> bool:
    for variable in VARIABLES["skip_verify"]:
        text = environ.get(variable)
        if text:
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
            problems.append(f"{variable}={text!r} is not a boolean (true, false, 1, 0)")
            return False
    value = options.get("skip_verify", False)
    if not isinstance(value, bool):
        problems.append("[providers.vault] skip_verify: must be true or false")
        return False
    return value


def _unknown_auth(auth: str) -> str:
    import difflib  # only on a mistake: it costs start-up time

    methods = list(AUTH_KEYS)
    # "app-role", "AppRole", "k8s": compare without case and punctuation.
    folded = {m.replace("-", "").replace("_", ""): m for m in methods}
    key = auth.lower().replace("-", "").replace("_", "")
    close = [folded[key]] if key in folded else difflib.get_close_matches(key, methods, n=1)
    if key in ("k8s", "kube"):
        close = ["kubernetes"]
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{auth!r} is not a login method ({hint}known: {', '.join(methods)})"


def _address_problem(address: str) -> str | None:
    """Why ``address`` cannot be Vault's URL, or None; a hint with each reason."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(address)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as err:
        return f"is not a URL ({err}): write https://HOST:8200"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        if "://" not in address:
            return (
                f"has no scheme: write https://{address} (or http://{address} for a "
                "server without TLS, such as a dev server)"
            )
        return "is not an http:// or https:// URL: write https://HOST:8200"
    return None
