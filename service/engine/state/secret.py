"""Credentials out of the log: `redact` hides the password (and user) of every URL in a text."""

from __future__ import annotations

import re

# scheme://user:password@ or scheme://:password@ or scheme://token@ -> scheme://***@
_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&]password=)[^&\s]*", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by `***` (redis://:pw@host -> redis://***@host)."""
    return _QUERY_PASSWORD.sub(r"\g<key>***", _CREDENTIALS.sub(r"\g<scheme>***@", text))
