"""DAJI request signing: MD5 over the sorted parameters and the app secret, upper-case hex."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from tongkuan.errors import TongkuanError


class AuthError(TongkuanError):
    """A request whose appKey, sign or appSecret does not authenticate it."""


class RateLimited(TongkuanError):
    """An application over its queries-per-second allowance."""


class ParameterError(TongkuanError):
    """A request parameter that breaks its rule; the message names both."""


def sign(params: Mapping[str, str | None], secret: str) -> str:
    """The DAJI signature of `params` (without `sign`; None values are skipped).

    >>> sign({"appKey": "k1", "picUrl": "http://a/b.jpg", "pageNo": "0"}, "s3")  # doctest: +SKIP
    MD5("appKey=k1&pageNo=0&picUrl=http://a/b.jpg&secret=s3") in upper-case hex
    """
    pairs = sorted((key, value) for key, value in params.items() if key != "sign" and value is not None)
    text = "&".join(f"{key}={value}" for key, value in pairs) + f"&secret={secret}"
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def authenticate(params: Mapping[str, str], apps: Mapping[str, str], allow_app_secret: bool) -> str:
    """Check a request's credentials and return its appKey; raise `AuthError` otherwise."""
    if not apps:
        raise AuthError("no applications are configured on this server (set TONGKUAN_APPS)")
    app_key = params.get("appKey")
    if not app_key:
        raise AuthError("appKey is required")
    secret = apps.get(app_key)
    if secret is None:
        raise AuthError(f"appKey {app_key!r} is unknown")
    given_sign = params.get("sign")
    if given_sign:
        if not hmac.compare_digest(given_sign.upper().encode(), sign(params, secret).encode()):
            raise AuthError("sign does not match the request parameters")
        return app_key
    given_secret = params.get("appSecret")
    if given_secret:
        if not allow_app_secret:
            raise AuthError("appSecret is disabled on this server; sign the request")
        if not hmac.compare_digest(given_secret.encode(), secret.encode()):
            raise AuthError("appSecret is wrong")
        return app_key
    raise AuthError("sign (or appSecret in testing mode) is required")
