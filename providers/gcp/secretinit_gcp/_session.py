"""The REST transport's HTTP session, settled once instead of on every request.

The client library's REST transport sends each request through a
``requests`` session that, trusting the environment, scans every variable
(proxies, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``) and looks for ``~/.netrc`` on
every request: with the hundred references a start may hold in its
environment, that scan cost more CPU than the request itself. The same
settings are read here once, for the one endpoint the session talks to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def settle_rest_session(
    client: Any, endpoint: str, environ: Mapping[str, str], concurrency: int
) -> None:
    """Fix the proxies and CA bundle of ``client``'s REST session; pool ``concurrency`` connections.

    A gRPC client has no such session and is left as it is.
    """
    import requests
    import requests.adapters

    session = getattr(client.transport, "_session", None)
    if not isinstance(session, requests.Session):
        return
    url = f"https://{endpoint}/"
    # What requests would work out per request: the proxy for this URL (HTTPS_PROXY,
    # ALL_PROXY, NO_PROXY) and the CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE).
    session.proxies = dict(requests.utils.get_environ_proxies(url))
    session.verify = environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE") or True
    session.trust_env = False
    # One kept-alive connection per concurrent read: the default pool keeps
    # 10, and urllib3 would open and drop the rest each time.
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=concurrency)
    session.mount("https://", adapter)
