"""HashiCorp Vault and OpenBao provider for secretinit: ``vault://MOUNT/PATH#KEY``.

Registered in the ``secretinit.providers`` entry-point group under ``vault``.
See README.md for configuration, login methods and the reference syntax.
"""

from secretinit_vault._leases import HeldLease
from secretinit_vault._provider import VaultProvider

__version__ = "0.1.0"

__all__ = ["HeldLease", "VaultProvider", "__version__"]
