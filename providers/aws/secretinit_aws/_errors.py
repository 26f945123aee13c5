"""AWS's errors as secretinit's: not found, access denied, unreachable (retried) or failed.

Messages name the store, the secret and AWS's error code and message; AWS
never puts a value in those, and nothing here adds one.
"""

from __future__ import annotations

import botocore.exceptions

from secretinit import AccessDenied, FetchError, NotFound, Throttled, Unreachable

NOT_FOUND_CODES = frozenset(
    {"ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound"}
)
#: The credential itself is refused: every call will be, whatever it asks.
CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",  # unknown access key
        "InvalidClientTokenId",
        "InvalidSignatureException",  # wrong secret key
        "SignatureDoesNotMatch",
        "ExpiredTokenException",
        "ExpiredToken",
    }
)
DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied"})
KMS_CODES = frozenset(
    {
        "DecryptionFailure",  # Secrets Manager: KMS refused or failed to decrypt
        "InvalidKeyId",  # SSM: the SecureString's key is disabled or gone
        "KMSAccessDeniedException",
        "KMSDisabledException",
        "KMSInvalidStateException",
        "KMSNotFoundException",
    }
)
#: AWS's words for "too many requests": the account's or the API's rate limit.
THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
    }
)
TRANSIENT_CODES = THROTTLING_CODES | frozenset(
    {
        "InternalServiceError",  # Secrets Manager's 500
        "InternalServerError",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


class CredentialRefused(AccessDenied):
    """AWS refused the credential itself (or there is none): every call would be refused."""


def map_error(error: BaseException, store: str, what: str = "") -> FetchError:
    """``error`` (raised by botocore) as secretinit's; ``store`` and ``what`` name the source."""
    if isinstance(error, FetchError):
        return error
    if isinstance(error, botocore.exceptions.ClientError):
        answer = error.response
        metadata = answer.get("ResponseMetadata", {})
        return map_aws_error(
            str(answer.get("Error", {}).get("Code", "Unknown")),
            str(answer.get("Error", {}).get("Message", "")),
            int(metadata.get("HTTPStatusCode", 0)),
            store,
            what,
            Throttled.parse_retry_after(metadata.get("HTTPHeaders", {}).get("retry-after")),
        )
    if isinstance(error, botocore.exceptions.SSLError):
        return FetchError(f"TLS with {store} failed: {error}")
    if isinstance(error, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError):
        return Unreachable(f"{store} could not be reached: {error}")
    if isinstance(error, botocore.exceptions.NoCredentialsError):
        return CredentialRefused(
            "no AWS credentials found (variables, profile, web identity, "
            "container or instance role)"
        )
    if isinstance(error, botocore.exceptions.BotoCoreError):
        return FetchError(f"{store}: {error}")
    return FetchError(f"{store} provider failed: {type(error).__name__}")


def map_aws_error(
    code: str,
    message: str,
    status: int,
    store: str,
    what: str = "",
    retry_after: float | None = None,
) -> FetchError:
    """An error AWS answered (``code``, ``message``, HTTP ``status``) as secretinit's.

    ``retry_after`` is the answer's ``Retry-After``, if it had one (AWS's
    APIs rarely send it; a proxy in front may).
    """
    subject = f" {what}" if what else ""
    message = message.strip()
    if code.isdigit():
        # botocore found no AWS error in the body (a proxy's page, moto's
        # XML for a JSON service): the status is all that can be trusted.
        code, said = f"HTTP {code}", f"HTTP {code}"
    else:
        said = f"{code}: {' '.join(message.split())}" if message else code
    if code in NOT_FOUND_CODES:
        return NotFound(f"{store} has no{subject or ' such secret'} ({code})")
    if code in KMS_CODES:
        return AccessDenied(f"{store} could not decrypt{subject} with KMS ({said})")
    if code in CREDENTIAL_CODES:
        return CredentialRefused(f"{store} refused the credential ({said})")
    if code in DENIED_CODES or status == 403:
        return AccessDenied(f"{store} refused to read{subject} ({said})")
    if code == "InvalidRequestException" and "delet" in message.lower():
        return NotFound(f"{store}{subject or ' secret'} is marked for deletion ({code})")
    if code in THROTTLING_CODES or status == 429:
        wait = f", Retry-After {retry_after:g} s" if retry_after is not None else ""
        return Throttled(f"{store} is throttling requests ({said}{wait})", retry_after)
    if code in TRANSIENT_CODES or status >= 500:
        return Unreachable(f"{store} answered {status} ({said})")
    return FetchError(f"{store} refused the request{subject} ({said})")
