"""The ``docker-secret`` provider: ``docker-secret://NAME`` reads ``/run/secrets/NAME``.

Docker Swarm, Compose and Kubernetes secret volumes mount each secret as a
file. The directory is ``/run/secrets`` unless ``[providers.docker-secret]
dir`` or ``SECRETINIT_DOCKER_SECRETS_DIR`` say otherwise (tests, non-standard
mounts). NAME is one path component, so a reference cannot read outside the
directory; symlinks inside it are followed, because a Kubernetes secret
volume is made of them (``NAME -> ..data/NAME``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from secretinit._errors import AccessDenied, BadReference, FetchError, NotFound
from secretinit._provider import FetchResult, Provider, select_key
from secretinit._reference import SecretRef

DEFAULT_DIR = "/run/secrets"
DIR_VARIABLE = "SECRETINIT_DOCKER_SECRETS_DIR"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


class DockerSecretProvider(Provider):
    """Secrets mounted as files by the container runtime."""

    config_options = frozenset({"dir"})

    def __init__(
        self,
        scheme: str,
        options: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scheme, options, environ)
        self.directory: str = (
            self.option_str("dir") or self.environ.get(DIR_VARIABLE) or DEFAULT_DIR
        )

    def check_reference(self, ref: SecretRef) -> None:
        super().check_reference(ref)
        if not _NAME.match(ref.location) or len(ref.location) > 255:
            raise BadReference(
                f"docker secret name {ref.location!r} is not valid: one file name of "
                "letters, digits, '.', '_' and '-', not starting with '.'"
            )

    def fetch(self, refs: Sequence[SecretRef], timeout: float) -> FetchResult:
        documents: dict[str, bytes | FetchError] = {}
        results: dict[SecretRef, bytes | FetchError] = {}
        for ref in refs:
            if ref.location not in documents:
                documents[ref.location] = self._read(ref.location)
            document = documents[ref.location]
            if isinstance(document, FetchError) or ref.key is None:
                results[ref] = document
                continue
            try:
                results[ref] = select_key(document, ref.key, f"docker secret {ref.location}")
            except NotFound as err:
                results[ref] = err
        return results

    def _read(self, name: str) -> bytes | FetchError:
        path = os.path.join(self.directory, name)
        try:
            with open(path, "rb") as stream:
                return stream.read()
        except FileNotFoundError:
            return NotFound(f"no docker secret {name!r} in {self.directory}")
        except PermissionError:
            return AccessDenied(f"docker secret {path} is not readable: permission denied")
        except IsADirectoryError:
            return FetchError(f"docker secret {path} is a directory, not a file")
        except OSError as err:
            return FetchError(f"docker secret {path} could not be read: {err.strerror}")
