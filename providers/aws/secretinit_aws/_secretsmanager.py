"""``aws-sm://NAME-OR-ARN[#KEY][?version-stage=STAGE&version-id=ID]``: AWS Secrets Manager."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import botocore.exceptions

from secretinit import AccessDenied, FetchError, NotFound, SecretRef
from secretinit_aws._errors import TRANSIENT_CODES, CredentialRefused, map_aws_error
from secretinit_aws._provider import (
    AwsProvider,
    Job,
    Outcome,
    chunks,
    deadline_passed,
)

#: The most secrets BatchGetSecretValue takes in one call.
BATCH_SIZE = 20

#: What one read asks for: (secret id, version stage, version id).
Read = tuple[str, str | None, str | None]


class SecretsManagerProvider(AwsProvider):
    """Secrets Manager: BatchGetSecretValue for current versions, GetSecretValue for others."""

    reference_options = frozenset({"version-stage", "version-id"})
    service = "secretsmanager"
    store = "Secrets Manager"
    noun = "secret"

    #: Set when the policy refuses BatchGetSecretValue (many grant only
    #: GetSecretValue): further batches of this run go one by one at once.
    _batch_refused = False

    def check_reference(self, ref: SecretRef) -> None:
        """A name needs a region; an ARN must be a Secrets Manager secret's."""
        super().check_reference(ref)
        self.check_location(ref, "secret:")

    def fetch(self, refs: Sequence[SecretRef], timeout: float) -> dict[SecretRef, Outcome]:
        """Read each distinct secret version once, then pick each reference's ``#KEY``."""
        deadline = self.start(timeout)
        reads: dict[SecretRef, Read] = {
            ref: (ref.location, ref.option("version-stage"), ref.option("version-id"))
            for ref in refs
        }
        current: dict[str | None, list[str]] = {}  # region -> ids read at AWSCURRENT
        versioned: list[Read] = []
        for read in dict.fromkeys(reads.values()):
            secret_id, stage, version_id = read
            if stage is None and version_id is None:
                current.setdefault(self.region_of(secret_id), []).append(secret_id)
            else:
                versioned.append(read)

        jobs: list[Job[Read]] = []
        for region, ids in current.items():
            client = self.client(region, deadline)
            for batch in chunks(ids, BATCH_SIZE):
                jobs.append(
                    ([(i, None, None) for i in batch], self._batch_job(client, batch, deadline))
                )
        for read in versioned:
            client = self.client(self.region_of(read[0]), deadline)
            jobs.append(([read], self._single_job(client, [read], deadline)))
        values = self.run(jobs, deadline)
        return {ref: self.pick_key(values[read], ref) for ref, read in reads.items()}

    def _batch_job(
        self, client: Any, ids: list[str], deadline: float
    ) -> Callable[[], dict[Read, Outcome]]:
        def job() -> dict[Read, Outcome]:
            results: dict[str, Outcome | None] = dict.fromkeys(ids)
            if not self._batch_refused:
                results = self._batch(client, ids, deadline)
            # What the batch could not say (a refused call, an id it did not
            # answer) is asked one by one, so each error names its own secret.
            retry: list[Read] = [(i, None, None) for i in ids if results.get(i) is None]
            found: dict[Read, Outcome] = {
                (i, None, None): v for i, v in results.items() if v is not None
            }
            return found | self._single(client, retry, deadline)

        return job

    def _batch(self, client: Any, ids: list[str], deadline: float) -> dict[str, Outcome | None]:
        results: dict[str, Outcome | None] = dict.fromkeys(ids)
        if (late := deadline_passed(deadline)) is not None:
            return dict.fromkeys(ids, late)
        arguments: dict[str, Any] = {"SecretIdList": ids}
        try:
            while True:  # botocore has no paginator for it; AWS may still page
                page = client.batch_get_secret_value(**arguments)
                for entry in page.get("SecretValues", []):
                    for secret_id in ids:
                        if _names(entry, secret_id):
                            results[secret_id] = _value(entry)
                for failure in page.get("Errors", []):
                    if failure.get("SecretId") in results:
                        results[failure["SecretId"]] = self._entry_error(failure)
                if not page.get("NextToken") or deadline_passed(deadline):
                    break
                arguments["NextToken"] = page["NextToken"]
        except botocore.exceptions.ClientError as err:
            mapped = self.error(err)
            if mapped.transient or isinstance(mapped, CredentialRefused):
                return dict.fromkeys(ids, mapped)
            if isinstance(mapped, AccessDenied):
                self._batch_refused = True  # the retries of this run go one by one
            # A policy without secretsmanager:BatchGetSecretValue, or one bad id
            # failing the whole call: GetSecretValue answers for each.
            return dict.fromkeys(ids)
        return results

    def _entry_error(self, failure: Mapping[str, Any]) -> FetchError:
        code = str(failure.get("ErrorCode", "Unknown"))
        # A per-secret error has no HTTP status; its code alone says transient.
        status = 500 if code in TRANSIENT_CODES else 400
        what = f"secret {failure.get('SecretId')!r}"
        return map_aws_error(code, str(failure.get("Message", "")), status, self.store, what)

    def _single_job(
        self, client: Any, reads: list[Read], deadline: float
    ) -> Callable[[], dict[Read, Outcome]]:
        return lambda: self._single(client, reads, deadline)

    def _single(self, client: Any, reads: Sequence[Read], deadline: float) -> dict[Read, Outcome]:
        results: dict[Read, Outcome] = {}
        for read in reads:
            secret_id, stage, version_id = read
            if (late := deadline_passed(deadline)) is not None:
                results[read] = late
                continue
            arguments = {"SecretId": secret_id}
            if stage is not None:
                arguments["VersionStage"] = stage
            if version_id is not None:
                arguments["VersionId"] = version_id
            try:
                results[read] = _value(client.get_secret_value(**arguments))
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as err:
                results[read] = self.error(err, _describe(read))
        return results


def _names(entry: Mapping[str, Any], secret_id: str) -> bool:
    """Whether ``secret_id`` (a name, a full ARN or a partial ARN) names ``entry``."""
    arn = str(entry.get("ARN", ""))
    if secret_id in (entry.get("Name"), arn):
        return True
    # A partial ARN lacks the "-" and six random characters AWS appends.
    return secret_id.startswith("arn:") and arn[:-7] == secret_id and arn[-7:-6] == "-"


def _value(entry: Mapping[str, Any]) -> Outcome:
    if entry.get("SecretBinary") is not None:
        return bytes(entry["SecretBinary"])  # botocore has already decoded the base64
    if entry.get("SecretString") is not None:
        return str(entry["SecretString"]).encode("utf-8")
    return NotFound(f"secret {entry.get('Name')!r} has a version with no value")


def _describe(read: Read) -> str:
    secret_id, stage, version_id = read
    text = f"secret {secret_id!r}"
    if stage is not None:
        text += f" at stage {stage!r}"
    if version_id is not None:
        text += f" version {version_id!r}"
    return text
