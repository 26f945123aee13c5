"""Which Linux capabilities this process holds, so that an error can name the missing one.

A container started as root holds only the capabilities its runtime grants
(`docker run --cap-drop ALL --cap-add ...`, a Kubernetes
``securityContext.capabilities``). When root is refused something, the
reason is a capability the runtime dropped, and saying which one is the fix.
"""

from __future__ import annotations

import os

from secretinit._errors import UsageError

# The capability numbers of <linux/capability.h> that secretinit can need.
CHOWN = 0
DAC_OVERRIDE = 1
FOWNER = 3
SETGID = 6
SETUID = 7
NAMES = {
    CHOWN: "CHOWN",
    DAC_OVERRIDE: "DAC_OVERRIDE",
    FOWNER: "FOWNER",
    SETGID: "SETGID",
    SETUID: "SETUID",
}

# A root start with --user: SETUID and SETGID to drop root (and to write the
# files as the user); CHOWN to give the secret directory to the user. Listed
# in the README's security section.
USER_SWITCH = (SETUID, SETGID, CHOWN)

STATUS = "/proc/self/status"


def effective_capabilities() -> int | None:
    """The effective capability set as a bit mask, or None where the kernel does not say."""
    try:
        with open(STATUS, encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


def missing_capabilities(wanted: tuple[int, ...]) -> list[str]:
    """The names of the ``wanted`` capabilities this process does not hold (root only).

    A process that is not root holds none and is not expected to: the answer
    is empty. Empty too when the set cannot be read: nothing to name then.
    """
    if os.geteuid() != 0:
        return []
    held = effective_capabilities()
    if held is None:
        return []
    return [NAMES[number] for number in wanted if not held >> number & 1]


def capability_hint(number: int) -> str:
    """`` (root without the NAME capability: ...)`` when that explains a refusal, else ``""``."""
    missing = missing_capabilities((number,))
    if not missing:
        return ""
    return (
        f" (secretinit runs as root without the {missing[0]} capability: grant it, "
        f"e.g. docker run --cap-add {missing[0]})"
    )


def require_user_switch(switch: str) -> None:
    """Refuse a root start for ``switch`` (``--user USER``) lacking SETUID or SETGID, naming which.

    Checked before anything is fetched: without them root could neither write
    the files as the user nor drop to it. CHOWN is named where it is needed
    (a directory that the user does not own yet).
    """
    missing = missing_capabilities((SETUID, SETGID))
    if missing:
        names = " and ".join(missing)
        noun = "capability" if len(missing) == 1 else "capabilities"
        raise UsageError(
            f"{switch}: secretinit runs as root without the {names} {noun} that "
            f"switching to the user needs; grant SETUID, SETGID and CHOWN "
            f"(docker run --cap-add {' --cap-add '.join(NAMES[n] for n in USER_SWITCH)})"
        )
