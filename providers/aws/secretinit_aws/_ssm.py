"""``aws-ssm:///PATH/NAME[#KEY][?version=N]``: AWS Systems Manager Parameter Store."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import botocore.exceptions

from secretinit import BadReference, FetchError, NotFound, SecretRef
from secretinit_aws._errors import CredentialRefused
from secretinit_aws._provider import AwsProvider, Job, Outcome, chunks, deadline_passed

#: The most names GetParameters takes in one call.
BATCH_SIZE = 10

#: What one read asks for: (name or ARN, version).
Read = tuple[str, int | None]


class ParameterStoreProvider(AwsProvider):
    """Parameter Store: GetParameters, ten names a call, SecureString decrypted."""

    reference_options = frozenset({"version"})
    service = "ssm"
    store = "Parameter Store"
    noun = "parameter"

    def check_reference(self, ref: SecretRef) -> None:
        """A hierarchical name starts with ``/``; ``?version`` is a positive integer."""
        super().check_reference(ref)
        self.check_location(ref, "parameter/")
        version = ref.option("version")
        if version is not None and not (version.isdigit() and int(version) > 0):
            raise BadReference(f"?version must be a positive integer, not {version!r}")
        name = ref.location
        if name.startswith("arn:"):
            return
        if "/" in name and not name.startswith("/"):
            raise BadReference(
                f"a parameter name with '/' starts with '/': write aws-ssm:///{name} "
                "(three slashes)"
            )
        if ":" in name:
            raise BadReference("a parameter name has no ':'; ask for a version with ?version=N")

    def fetch(self, refs: Sequence[SecretRef], timeout: float) -> dict[SecretRef, Outcome]:
        """Read each distinct parameter version once, then pick each reference's ``#KEY``."""
        deadline = self.start(timeout)
        reads: dict[SecretRef, Read] = {}
        for ref in refs:
            version = ref.option("version")
            reads[ref] = (ref.location, int(version) if version is not None else None)
        by_region: dict[str | None, list[Read]] = {}
        for read in dict.fromkeys(reads.values()):
            by_region.setdefault(self.region_of(read[0]), []).append(read)

        jobs: list[Job[Read]] = []
        for region, region_reads in by_region.items():
            client = self.client(region, deadline)
            for batch in chunks(region_reads, BATCH_SIZE):
                jobs.append((batch, self._batch_job(client, batch, deadline)))
        values = self.run(jobs, deadline)
        return {ref: self.pick_key(values[read], ref) for ref, read in reads.items()}

    def _batch_job(
        self, client: Any, reads: list[Read], deadline: float
    ) -> Callable[[], dict[Read, Outcome]]:
        def job() -> dict[Read, Outcome]:
            results = self._batch(client, reads, deadline)
            if results is not None:
                return results
            # The whole call was refused: AWS denies GetParameters when any one
            # name is denied. One call per name says which.
            single: dict[Read, Outcome] = {}
            for read in reads:
                single.update(self._batch(client, [read], deadline) or {})
            return single

        return job

    def _batch(self, client: Any, reads: list[Read], deadline: float) -> dict[Read, Outcome] | None:
        """Read ``reads`` in one call; None when a call of several was refused as a whole."""
        if (late := deadline_passed(deadline)) is not None:
            return dict.fromkeys(reads, late)
        names = {_request_name(read): read for read in reads}
        try:
            answer = client.get_parameters(Names=list(names), WithDecryption=True)
        except botocore.exceptions.ClientError as err:
            mapped = self.error(err, _describe(reads[0]) if len(reads) == 1 else "")
            if mapped.transient or len(reads) == 1 or isinstance(mapped, CredentialRefused):
                return dict.fromkeys(reads, mapped)
            return None
        results: dict[Read, Outcome] = {}
        for name in answer.get("InvalidParameters", []):
            if name in names:
                read = names[name]
                results[read] = NotFound(f"Parameter Store has no {_describe(read)}")
        parameters = answer.get("Parameters", [])
        for read in reads:
            if read in results:
                continue
            match = _find(parameters, read)
            if match is None:
                results[read] = FetchError(f"Parameter Store did not answer for {_describe(read)}")
            else:
                results[read] = str(match.get("Value", "")).encode("utf-8")
        return results


def _request_name(read: Read) -> str:
    name, version = read
    return name if version is None else f"{name}:{version}"


def _find(parameters: Sequence[Mapping[str, Any]], read: Read) -> Mapping[str, Any] | None:
    """The parameter answering ``read``, matched by name (or ARN) and version.

    Answers are matched on ``Version``, not ``Selector``: moto leaves
    ``Selector`` out. Asked for no version, AWS returns the latest, which is
    the highest version when the same call also asked for an older one.
    """
    name, version = read
    candidates = [
        p
        for p in parameters
        if name in (p.get("Name"), p.get("ARN"))
        and (version is None or p.get("Version") == version)
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda p: int(p.get("Version", 0)))


def _describe(read: Read) -> str:
    name, version = read
    return f"parameter {name!r}" + (f" version {version}" if version is not None else "")
