"""Passwords out of messages: the one masking function for database, Optuna and MLflow URLs.

Settings errors, resource errors and metadata show store URLs; none may show a password
(docs/decisions.md, "Settings and policies"). SQLAlchemy's own URL parser does the work (it also
parses http(s) URLs with `user:pass@`); a regex covers what it cannot parse.
"""

from __future__ import annotations

import re

MASK = "***"
# Query parameters that carry a credential (libpq and most drivers accept ?password=...).
SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pwd", "secret", "token", "access_token", "api_key"})
_USERINFO = re.compile(r"(//[^:/@\s]*):[^@/\s]+@")
_QUERY = re.compile(r"([?&;](?:" + "|".join(sorted(SECRET_QUERY_KEYS)) + r")=)[^&;#\s]+", re.IGNORECASE)


def _parsed(url: str):
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        return None


def _secret_keys(parsed) -> list[str]:
    return [key for key, value in parsed.query.items() if key.lower() in SECRET_QUERY_KEYS and value]


def has_password(url: object) -> bool:
    """True if `url` holds a password, in its user info or as a query parameter."""
    if not isinstance(url, str):
        return False
    parsed = _parsed(url)
    if parsed is None:
        return masked_url(url) != url
    return bool(parsed.password) or bool(_secret_keys(parsed))


def masked_url(url: str) -> str:
    """`url` with any password (user info or a secret query parameter) replaced by ***.

    A URL without a password comes back unchanged (not re-rendered)."""
    parsed = _parsed(url)
    if parsed is None:
        return _QUERY.sub(r"\g<1>" + MASK, _USERINFO.sub(r"\1:" + MASK + "@", url))
    secret_keys = _secret_keys(parsed)
    if not parsed.password and not secret_keys:
        return url
    masked = parsed.update_query_dict({key: MASK for key in secret_keys})
    # render_as_string percent-encodes query values: show the mask as written.
    return masked.render_as_string(hide_password=True).replace("%2A%2A%2A", MASK)
