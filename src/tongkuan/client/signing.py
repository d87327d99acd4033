"""DAJI request signing, on the client's side: what it signs must be exactly what it sends;
and keeping the secret out of the logs, where httpx writes every request's URL at INFO with
its `sign` (or, in testing mode, the `appSecret` itself)."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field


def sign(params: Mapping[str, str | None], secret: str) -> str:
    """The DAJI `sign` of `params`: every parameter but `sign` whose value is not None (empty
    strings kept), sorted by key, joined as `k=v` with `&`, then `&secret=<appSecret>`; the
    upper-case hex MD5 of those UTF-8 bytes. Values are signed raw, not URL-encoded.

    >>> sign({"appKey": "k1", "picUrl": "http://a/b.jpg", "pageNo": "0"}, "s3")  # doctest: +SKIP
    # the MD5 of "appKey=k1&pageNo=0&picUrl=http://a/b.jpg&secret=s3"
    """
    pairs = sorted((key, value) for key, value in params.items() if key != "sign" and value is not None)
    text = "&".join(f"{key}={value}" for key, value in pairs) + f"&secret={secret}"
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


@dataclass(frozen=True)
class Credentials:
    """An application's appKey and appSecret. With `plain_secret` the secret itself is sent
    (`appSecret`, DAJI's testing mode, which a service may turn off) instead of a `sign`."""

    app_key: str
    app_secret: str = field(repr=False)
    plain_secret: bool = False

    def apply(self, params: Mapping[str, str | None]) -> dict[str, str]:
        """`params` without None values, plus `appKey` and `sign` (or `appSecret`)."""
        sent = {key: value for key, value in params.items() if value is not None}
        sent["appKey"] = self.app_key
        if self.plain_secret:
            sent["appSecret"] = self.app_secret
        else:
            sent["sign"] = sign(sent, self.app_secret)
        return sent


HIDDEN = "***"
_SECRET_PARAM = re.compile(r"(?<=[?&])(appSecret|sign)=[^&\s\"'#]*")


def hide_secrets(text: str) -> str:
    """`text` with the values of every `appSecret` and `sign` query parameter replaced by `***`."""
    return _SECRET_PARAM.sub(rf"\1={HIDDEN}", text)


class SecretsFilter(logging.Filter):
    """Rewrites a record's message with `hide_secrets` (it never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a record that cannot be formatted: its handler reports it
            return True
        hidden = hide_secrets(message)
        if hidden != message:
            record.msg, record.args = hidden, None
        return True


_FILTER = SecretsFilter()


def hide_secrets_in_httpx_logs() -> None:
    """Put `SecretsFilter` on the `httpx` logger, once (the clients call this when made)."""
    logging.getLogger("httpx").addFilter(_FILTER)  # a filter already there is not added twice
