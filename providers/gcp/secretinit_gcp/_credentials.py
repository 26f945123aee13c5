"""Application Default Credentials, as google-auth finds them, and one token per run.

google-auth looks in this order: ``GOOGLE_APPLICATION_CREDENTIALS`` (a
service account key, an external account file for workload identity
federation, ...), gcloud's application default credentials file, then the
metadata server of GCE, GKE and Cloud Run. Every error here names the source
that was tried. The token is fetched once, before any read, so that reads
started together never each fetch one, and so that a credential failure is
reported as one rather than as a failed read.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from secretinit import AccessDenied
from secretinit_gcp._errors import reason_of, token_error

if TYPE_CHECKING:
    import requests

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# What each credential class google-auth returns is, in a user's words.
_KINDS = {
    "google.oauth2.service_account": "service account key",
    "google.oauth2.credentials": "user credentials",
    "google.auth.identity_pool": "external account file (workload identity federation)",
    "google.auth.aws": "external account file (workload identity federation)",
    "google.auth.pluggable": "external account file (workload identity federation)",
    "google.auth.external_account_authorized_user": "external account user credentials",
    "google.auth.impersonated_credentials": "service account impersonation file",
    "google.oauth2.gdch_credentials": "GDC-H service account key",
}


@dataclass
class Identity:
    """Credentials found for this run, the project they come with, and where they came from."""

    credentials: Any  # google.auth.credentials.Credentials: google-auth is not typed
    project: str | None
    source: str


def find_identity(
    environ: Mapping[str, str], session: requests.Session, deadline: float
) -> Identity:
    """The Application Default Credentials, or :class:`AccessDenied` naming what was tried."""
    import google.auth
    from google.auth import exceptions

    request = deadline_request(session, deadline)
    try:
        credentials, project = google.auth.default(scopes=SCOPES, request=request)
    except exceptions.DefaultCredentialsError as err:
        raise AccessDenied(_none_found(environ, err)) from None
    except exceptions.GoogleAuthError as err:
        # An external account looks its project up with a token: that can fail too.
        raise token_error(err, _source_of_environment(environ)) from None
    source = describe_source(credentials, environ)
    from google.oauth2 import service_account

    if isinstance(credentials, service_account.Credentials):
        # As the client library does: a key signs its own token (a self-signed
        # JWT) instead of exchanging a signed grant at its token_uri.
        jwt_access: Any = credentials.with_always_use_jwt_access  # untyped in google-auth
        credentials = jwt_access(True)
    return Identity(credentials, project, source)


def fetch_token(identity: Identity, session: requests.Session, deadline: float) -> None:
    """Fetch the token now, once, unless the credentials still hold a valid one."""
    from google.auth import exceptions

    if identity.credentials.valid:
        return
    try:
        identity.credentials.refresh(deadline_request(session, deadline))
    except exceptions.GoogleAuthError as err:
        raise token_error(err, identity.source) from None


def deadline_request(session: requests.Session, deadline: float) -> Any:
    """google-auth's HTTP request callable, over ``session``, that never outlasts ``deadline``.

    google-auth waits up to 120 s for a token endpoint by default.
    """
    from google.auth.transport.requests import Request

    class DeadlineRequest(Request):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            remaining = max(0.1, deadline - time.monotonic())
            timeout = kwargs.get("timeout")
            kwargs["timeout"] = remaining if timeout is None else min(timeout, remaining)
            call: Any = super().__call__  # untyped in google-auth
            return call(*args, **kwargs)

    return DeadlineRequest(session)


def describe_source(credentials: Any, environ: Mapping[str, str]) -> str:
    """Which credentials these are and where google-auth found them."""
    module = type(credentials).__module__
    if module.startswith("google.auth.compute_engine"):
        return f"the metadata server ({metadata_host(environ)})"
    kind = _KINDS.get(module, type(credentials).__name__)
    explicit = environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    gcloud = gcloud_credentials_path(environ)
    if explicit and explicit != gcloud:
        return f"the {kind} in GOOGLE_APPLICATION_CREDENTIALS ({explicit})"
    return f"the {kind} of gcloud's application default credentials ({gcloud})"


def metadata_host(environ: Mapping[str, str]) -> str:
    """Where google-auth looks for the metadata server."""
    return (
        environ.get("GCE_METADATA_HOST")
        or environ.get("GCE_METADATA_ROOT")
        or "metadata.google.internal"
    )


def gcloud_credentials_path(environ: Mapping[str, str]) -> str:
    """gcloud's application default credentials file (``gcloud auth application-default login``)."""
    config = environ.get("CLOUDSDK_CONFIG") or os.path.join(
        environ.get("HOME", "~"), ".config", "gcloud"
    )
    return os.path.join(config, "application_default_credentials.json")


def _source_of_environment(environ: Mapping[str, str]) -> str:
    explicit = environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if explicit:
        return f"the credentials in GOOGLE_APPLICATION_CREDENTIALS ({explicit})"
    return "the application default credentials"


def _none_found(environ: Mapping[str, str], err: Exception) -> str:
    reason = reason_of(err)
    explicit = environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if explicit:
        return f"GOOGLE_APPLICATION_CREDENTIALS ({explicit}) cannot be used: {reason}"
    gcloud = gcloud_credentials_path(environ)
    if os.path.isfile(gcloud):
        return f"gcloud's application default credentials ({gcloud}) cannot be used: {reason}"
    # The path comes last: a long HOME must not push the rest past a report's width.
    return (
        "no Google Cloud credentials found: GOOGLE_APPLICATION_CREDENTIALS is not set, no "
        f"metadata server answered at {metadata_host(environ)}, and there are no gcloud "
        f"application default credentials ({gcloud})"
    )
