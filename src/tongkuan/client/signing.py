"""DAJI request signing, on the client's side: what it signs must be exactly what it sends."""

from __future__ import annotations

import hashlib
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
