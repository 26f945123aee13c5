"""From a Key Vault secret (always a string) to the bytes secretinit writes.

Key Vault stores text. Binary content is stored encoded, and the Azure CLI
records how: ``az keyvault secret set --file F --encoding base64`` stores the
file's base64 with the tag ``file-encoding=base64``, which ``az keyvault
secret download`` reads back. secretinit does the same, and ``?encoding=``
on a reference overrides the tag.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from secretinit import FetchError

ENCODINGS = ("utf-8", "base64", "hex")
ENCODING_TAG = "file-encoding"


def decode_value(text: str, tags: Mapping[str, str], option: str | None, what: str) -> bytes:
    """The bytes of secret ``what``: its text as UTF-8, or decoded from base64 or hex.

    The reference's ``?encoding=`` wins; else the ``file-encoding`` tag when
    it names base64 or hex; else UTF-8. Other tag values (``utf-8``, ``ascii``)
    mean the text is the content.
    """
    tag = tags.get(ENCODING_TAG)
    encoding = option or (tag if tag in ("base64", "hex") else "utf-8")
    if encoding == "utf-8":
        return text.encode("utf-8")
    source = f"?encoding={option}" if option else f"tag {ENCODING_TAG}={tag}"
    compact = "".join(text.split())  # a value pasted from `base64` may hold newlines
    try:
        if encoding == "base64":
            return base64.b64decode(compact, validate=True)
        return bytes.fromhex(compact)
    except (binascii.Error, ValueError):
        # Say which encoding failed, never what the text was.
        raise FetchError(f"{what} is not valid {encoding} ({source})") from None
