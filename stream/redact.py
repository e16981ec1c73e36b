"""Keep credentials out of logs, status events and published messages.

A source spec such as ``rtsp://admin:hunter2@10.0.0.5/stream?token=abc`` must never be printed,
logged or published as is. :func:`redact_url` is applied wherever a source spec leaves the
process that received it (status queue, logs, exceptions, ZeroMQ status messages); it is pure and
never raises.
"""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = ["redact_url", "redact_text", "url_secrets", "MASK", "SENSITIVE_QUERY_KEYS"]

MASK = "***"

# Query-string keys whose values are secrets (compared lower-case, with '-' and '_' removed).
SENSITIVE_QUERY_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "token",
        "accesstoken",
        "authtoken",
        "auth",
        "key",
        "apikey",
        "secret",
        "clientsecret",
        "signature",
        "sig",
        "credential",
        "credentials",
        "user",
        "username",
        "login",
        "session",
        "sessionid",
        "jwt",
        "bearer",
        "xamzsignature",
        "xamzcredential",
        "xamzsecuritytoken",
    }
)

_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


def _is_sensitive(key: str) -> bool:
    return key.lower().replace("-", "").replace("_", "") in SENSITIVE_QUERY_KEYS


def _redact_query(query: str) -> str:
    """Mask the values of sensitive ``key=value`` pairs (separated by ``&`` or ``;``), keeping
    everything else byte for byte."""
    parts = re.split(r"([&;])", query)  # separators kept at odd indices
    for i in range(0, len(parts), 2):
        key, eq, _value = parts[i].partition("=")
        if eq and _is_sensitive(key):
            parts[i] = f"{key}={MASK}"
    return "".join(parts)


def redact_url(url: str) -> str:
    """Return ``url`` with its credentials replaced by ``***``.

    - user info: ``rtsp://user:pass@host:554/x`` -> ``rtsp://***@host:554/x`` (the user name is
      masked too; a password may itself contain ``@`` or ``/``, so everything between ``://`` and
      the last ``@`` before the query is treated as user info: over-masking is preferred to a leak);
    - query strings and ``;key=value`` path parameters: values of keys such as ``password``,
      ``token``, ``key``, ``user`` (:data:`SENSITIVE_QUERY_KEYS`) -> ``***``.

    Anything that is not a URL (a webcam index, a file path, ``synthetic:3``) is returned unchanged.
    Never raises.
    """
    if not isinstance(url, str):
        url = str(url)
    try:
        scheme, sep, rest = url.partition("://")
        if not sep:
            return url
        # Split off fragment and query first (they cannot be part of the user info we mask).
        rest, hsep, fragment = rest.partition("#")
        rest, qsep, query = rest.partition("?")
        if "@" in rest:
            rest = MASK + "@" + rest.rpartition("@")[2]
        # Path parameters (';password=x') used by some cameras.
        if ";" in rest:
            head, _, params = rest.partition(";")
            rest = head + ";" + _redact_query(params)
        if qsep:
            query = _redact_query(query)
        if hsep and "=" in fragment:
            fragment = _redact_query(fragment)
        return f"{scheme}://{rest}{qsep}{query}{hsep}{fragment}"
    except Exception:  # pragma: no cover - defensive: a redactor must never raise
        return f"<unprintable source: {len(url)} chars>"


def redact_text(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """Redact every URL found in free text (an exception message, a log line).

    ``secrets``: extra literal strings to mask wherever they occur (e.g. a password that was
    passed separately); their URL-quoted forms are masked too.
    """
    if not isinstance(text, str):
        text = str(text)
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    for s in secrets:
        if s:
            for form in {s, quote(s, safe="")}:
                text = text.replace(form, MASK)
    return text


def url_secrets(url: str) -> tuple[str, ...]:
    """The secret pieces of a URL (user info, its password alone, sensitive query values), to pass
    as ``secrets`` to :func:`redact_text` for text that might quote them out of URL context."""
    scheme, sep, rest = str(url).partition("://")
    if not sep:
        return ()
    rest = rest.partition("#")[0]
    rest, _, query = rest.partition("?")
    found = []
    if "@" in rest:
        userinfo = rest.rpartition("@")[0]
        found.append(userinfo)
        user, colon, password = userinfo.partition(":")
        if colon:
            found.append(password)
    params = rest.partition(";")[2]
    for part in re.split(r"[&;]", f"{params}&{query}"):
        key, eq, value = part.partition("=")
        if eq and value and _is_sensitive(key):
            found.append(value)
    return tuple(s for s in found if len(s) >= 3)  # masking 1-2 character strings would garble text
