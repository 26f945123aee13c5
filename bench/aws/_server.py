"""moto's server in its own process, counting the API calls it answers.

Run by the benchmark as ``python -m bench.aws._server``: prints its port on
the first line of stdout, then serves until stdin closes. ``GET
/_bench/calls`` returns the calls answered since the last ``POST
/_bench/reset``, by operation (``X-Amz-Target``); everything else goes to moto.
A process of its own so that the server never shares a GIL with a contender.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

StartResponse = Callable[..., Any]


def counting(app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> Any:
    """``app`` behind a layer that counts JSON API calls by operation."""
    calls: Counter[str] = Counter()
    lock = threading.Lock()

    def layer(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_bench/"):
            with lock:
                if environ["REQUEST_METHOD"] == "POST":
                    calls.clear()
                body = json.dumps(dict(calls)).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target:
            with lock:
                calls[target.rpartition(".")[2]] += 1
        return app(environ, start_response)

    return layer


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(
        "127.0.0.1", 0, counting(app), threaded=True, request_handler=MotoRequestHandler
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # the benchmark closes our stdin when it is done
    server.shutdown()


if __name__ == "__main__":
    main()
