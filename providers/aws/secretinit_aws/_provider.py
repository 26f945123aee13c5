"""What the Secrets Manager and Parameter Store providers share.

The SDK's own chains (botocore's, the ones boto3 uses) decide credentials,
region and endpoint: variables, profiles, web identity (EKS IRSA), ECS task
roles, instance metadata, ``AWS_ENDPOINT_URL`` and
``AWS_ENDPOINT_URL_<SERVICE>``. This module only adds what the SDK cannot
know: the core's deadline (per-request timeouts, no request after it), the
region of an ARN, and concurrency. ``_errors`` maps AWS's errors.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import botocore.config
import botocore.exceptions
import botocore.session

from secretinit import (
    BadReference,
    Cancel,
    ConfigError,
    FetchError,
    NotFound,
    Provider,
    SecretRef,
    Throttled,
    Unreachable,
    run_bounded,
    select_key,
)
from secretinit_aws._errors import CredentialRefused, map_error

if TYPE_CHECKING:
    from botocore.client import BaseClient

K = TypeVar("K", bound=Hashable)
Outcome = bytes | FetchError
#: One unit of work: the keys it answers for and the function that answers.
Job = tuple[Sequence[K], Callable[[], Mapping[K, Outcome]]]

#: Calls in flight at once (and connections per client). AWS answers in tens
#: of milliseconds, so a batch of 50 calls is mostly waiting: overlap it.
MAX_CONCURRENCY = 10
#: Upper bounds of one request's timeouts; the deadline lowers them.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
#: One attempt per call: the core owns retries. botocore's own (3 attempts
#: in its standard mode) would multiply every request of a throttled fleet
#: behind the core's back, with a backoff that knows nothing of the deadline.
MAX_ATTEMPTS = 1


class AwsProvider(Provider):
    """A botocore client per region, built for the core's deadline."""

    config_table = "aws"
    config_options = frozenset({"region", "profile"})
    #: The service's name in ARNs and in botocore ("secretsmanager", "ssm").
    service: ClassVar[str]
    #: The store's name in messages ("Secrets Manager").
    store: ClassVar[str]
    #: What one item of the store is called in messages ("secret", "parameter").
    noun: ClassVar[str]

    def __init__(
        self,
        scheme: str,
        options: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scheme, options, environ)
        # botocore reads the process environment itself (os.environ, which is
        # what the core passes). botocore, not boto3: the same chains, and
        # boto3's import (S3 transfer manager, resources) costs ~0.1 s of CPU
        # at every start.
        profile = self.option_str("profile")
        self.session = botocore.session.Session(profile=profile)
        # The table first; then AWS_REGION, which ECS, Lambda and every other
        # AWS SDK set and read, and which the AWS CLI puts before
        # AWS_DEFAULT_REGION; botocore itself reads only the latter, then the
        # profile's region.
        region = self.option_str("region") or self.environ.get("AWS_REGION") or None
        if region is not None:
            self.session.set_config_variable("region", region)
        try:
            self.session.get_scoped_config()  # reads the profile, if any
            self.region: str | None = self.session.get_config_variable("region")
        except botocore.exceptions.ProfileNotFound:
            raise ConfigError(
                f"AWS profile {profile or 'named by AWS_PROFILE'!r} is not in the AWS config files"
            ) from None
        self._clients: dict[tuple[str | None, float, float], BaseClient] = {}
        self._trouble = ""
        self._deadline = math.inf

    def check_location(self, ref: SecretRef, resource: str) -> None:
        """Check an ARN's service and resource type, or that a name has a region."""
        if ref.location.startswith("arn:"):
            parts = ref.location.split(":", 5)
            if (
                len(parts) < 6
                or parts[2] != self.service
                or not parts[3]
                or not parts[5].startswith(resource)
            ):
                raise BadReference(
                    f"not an ARN of {self.store}: expected "
                    f"arn:PARTITION:{self.service}:REGION:ACCOUNT:{resource}NAME"
                )
        elif self.region is None:
            raise BadReference(
                "no AWS region for a name: set AWS_REGION (or a profile's region, or "
                f"[providers.{self.table}] region), or use the full ARN"
            )

    def region_of(self, location: str) -> str | None:
        """The region of an ARN, else the session's."""
        return location.split(":", 5)[3] if location.startswith("arn:") else self.region

    def client(self, region: str | None, deadline: float) -> Any:
        """A client for ``region`` whose requests cannot outlive ``deadline`` by much.

        Clients are built here, on the caller's thread (a botocore session is not
        thread-safe), and are themselves safe to share between threads.
        """
        # Whole seconds: each retry of the core would otherwise build a new client
        # (tens of ms of CPU) for timeouts a few milliseconds shorter.
        remaining = math.ceil(max(0.1, deadline - time.monotonic()))
        connect, read = min(CONNECT_TIMEOUT, remaining), min(READ_TIMEOUT, remaining)
        key = (region, connect, read)
        if key not in self._clients:
            config = botocore.config.Config(
                connect_timeout=connect,
                read_timeout=read,
                retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
                max_pool_connections=MAX_CONCURRENCY,
                user_agent_extra="secretinit",
            )
            client = self.session.create_client(
                self.service,
                region_name=region,
                config=config,
            )
            client.meta.events.register("needs-retry", self._note_trouble)
            client.meta.events.register("before-send", self._refuse_late_attempts)
            self._clients[key] = client
        return self._clients[key]

    def start(self, timeout: float) -> float:
        """The deadline of a fetch given ``timeout`` seconds; no request is sent after it."""
        self._deadline = time.monotonic() + timeout
        return self._deadline

    def _refuse_late_attempts(self, **_: Any) -> None:
        # botocore's own retries would go on after the core has given up, and
        # the interpreter waits for those threads before it exits.
        if time.monotonic() >= self._deadline:
            raise Unreachable(f"the deadline passed before {self.store} could be asked")

    def _note_trouble(self, response: Any = None, caught_exception: Any = None, **_: Any) -> None:
        """Remember the last failed attempt, to say why a call ran out of time."""
        if caught_exception is not None:
            self._trouble = type(caught_exception).__name__
        elif response is not None and "Error" in response[1]:
            error = response[1]["Error"]
            self._trouble = f"HTTP {response[0].status_code} {error.get('Code', '')}".strip()

    def run(self, jobs: Sequence[Job[K]], deadline: float) -> dict[K, Outcome]:
        """Run ``jobs`` concurrently; what has no answer by ``deadline`` is unreachable.

        A refused credential or a throttled call stops the jobs not yet
        started: they get that answer, not one doomed call each.
        """
        cancel = Cancel()
        late = Unreachable("late")  # replaced below, once the last trouble is known

        def work(index: int) -> dict[K, Outcome]:
            keys, job = jobs[index]
            try:
                outcome = dict(job())
            except Exception as err:  # a call's error is every key's error
                outcome = dict.fromkeys(keys, self.error(err))
            for value in outcome.values():
                if isinstance(value, CredentialRefused | Throttled):
                    cancel.set(value)
            return outcome

        done = run_bounded(
            work,
            range(len(jobs)),
            concurrency=MAX_CONCURRENCY,
            deadline=deadline,
            late=late,
            cancel=cancel,
            name="secretinit-aws",
        )
        why = f" (last attempt: {self._trouble})" if self._trouble else ""
        late_now = Unreachable(f"no answer from {self.store} before the deadline{why}")
        results: dict[K, Outcome] = {}
        for index, (keys, _job) in enumerate(jobs):
            outcome = done[index]
            if isinstance(outcome, FetchError):  # the job never answered: each key gets why
                results.update(dict.fromkeys(keys, late_now if outcome is late else outcome))
            else:
                results.update(outcome)
        return results

    def pick_key(self, value: Outcome, ref: SecretRef) -> Outcome:
        """``#KEY`` of a fetched JSON value, or the value (or error) as it is."""
        if isinstance(value, FetchError) or ref.key is None:
            return value
        try:
            return select_key(value, ref.key, f"{self.noun} {ref.location}")
        except NotFound as err:
            return err

    def error(self, error: BaseException, what: str = "") -> FetchError:
        """``error`` (raised by botocore) as secretinit's; ``what`` names the secret."""
        return map_error(error, self.store, what)

    def close(self) -> None:
        """Close every client's connections."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def chunks(items: Sequence[K], size: int) -> Iterator[list[K]]:
    """``items`` in lists of at most ``size``."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def deadline_passed(deadline: float) -> Unreachable | None:
    """An error when no further call may start, else None."""
    if time.monotonic() >= deadline:
        return Unreachable("the deadline passed before the call could be made")
    return None
