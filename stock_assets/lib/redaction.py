"""Passwords out of messages: the one masking function for every message and log line.

Settings errors, resource errors, log lines and metadata show store URLs; none may show a password
(docs/inputs-and-secrets.md, "No secret in any message"). `mask_secrets(text)` masks every password
in a free text — URL user info (`scheme://user:PASSWORD@host`) and credential query parameters
(`?password=`, `&pwd=`, `;token=`, ...) or libpq keyword pairs (`password=...`) — whatever the text
around them; `masked_url(url)` does the same for one URL through SQLAlchemy's URL parser, and
`has_password` says whether a value holds one.
"""

from __future__ import annotations

import re

MASK = "***"
# Query parameters (and libpq keywords) that carry a credential.
SECRET_QUERY_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "secret",
        "token",
        "access_token",
        "api_key",
        "apikey",
        "sslpassword",
        "client_secret",
        "auth",
    }
)
_KEYS = "|".join(sorted(SECRET_QUERY_KEYS, key=len, reverse=True))
# scheme://user:PASSWORD@ (and //user:PASSWORD@ without a scheme); the password runs to the last '@'
# before the host, so a raw '@' or ':' inside it (p@ss:w0rd) is masked too.
_USERINFO = re.compile(r"((?:[A-Za-z][A-Za-z0-9+.\-]*:)?//[^:/?#@\s'\"]*):[^\s'\"]+@(?=[^@\s'\"/?#]*(?:[/?#:\s'\"]|$))")
# ?password=..., &pwd=..., ;token=... up to the next separator.
_QUERY = re.compile(r"([?&;](?:" + _KEYS + r")=)[^&;#\s'\"]+", re.IGNORECASE)
# libpq keyword/value strings and 'password: x' fragments: "host=db password=x", "password='x y'".
_KEYWORD = re.compile(
    r"(?<![\w?&;.\-])((?:" + _KEYS + r")['\"]?\s*[=:]\s*)('[^']*'|\"[^\"]*\"|[^\s,;&'\"}\]\)]+)", re.IGNORECASE
)


def _parsed(url: str):
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        return None


def _secret_keys(parsed) -> list[str]:
    return [key for key, value in parsed.query.items() if key.lower() in SECRET_QUERY_KEYS and value]


def mask_secrets(text: object) -> str:
    """`text` (any message, log line or URL; not a string: its str()) with every password replaced
    by ***: in URL user info, in credential query parameters and in `password=...` keyword pairs.
    Text without a password comes back unchanged."""
    text = text if isinstance(text, str) else str(text)
    if "@" not in text and "=" not in text and ":" not in text:
        return text
    text = _USERINFO.sub(r"\1:" + MASK + "@", text)
    text = _QUERY.sub(r"\g<1>" + MASK, text)
    return _KEYWORD.sub(lambda m: m.group(1) + (MASK if m.group(2) != MASK else m.group(2)), text)


def has_password(url: object) -> bool:
    """True if `url` (a URL or any text) holds a password, in user info, a query parameter or a keyword pair."""
    if not isinstance(url, str):
        return False
    parsed = _parsed(url)
    if parsed is not None and (parsed.password or _secret_keys(parsed)):
        return True
    return mask_secrets(url) != url


def masked_url(url: str) -> str:
    """`url` with any password (user info or a secret query parameter) replaced by ***.

    A URL without a password comes back unchanged (not re-rendered)."""
    parsed = _parsed(url)
    if parsed is None:
        return mask_secrets(url)
    secret_keys = _secret_keys(parsed)
    if not parsed.password and not secret_keys:
        return mask_secrets(url)
    masked = parsed.update_query_dict({key: MASK for key in secret_keys})
    # render_as_string percent-encodes query values: show the mask as written.
    return masked.render_as_string(hide_password=True).replace("%2A%2A%2A", MASK)
