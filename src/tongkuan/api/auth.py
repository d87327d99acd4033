"""DAJI request signing: MD5 over the sorted parameters and the app secret, upper-case hex."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping

from tongkuan.errors import AuthError, BadCredentials


def sign(params: Mapping[str, str | None], secret: str) -> str:
    """The DAJI signature of `params` (without `sign`; None values are skipped).

    >>> sign({"appKey": "k1", "picUrl": "http://a/b.jpg", "pageNo": "0"}, "s3")  # doctest: +SKIP
    MD5("appKey=k1&pageNo=0&picUrl=http://a/b.jpg&secret=s3") in upper-case hex
    """
    pairs = sorted((key, value) for key, value in params.items() if key != "sign" and value is not None)
    text = "&".join(f"{key}={value}" for key, value in pairs) + f"&secret={secret}"
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def authenticate(params: Mapping[str, str], apps: Mapping[str, str], allow_app_secret: bool) -> str:
    """Check a request's credentials and return its appKey.

    Raises `BadCredentials` when the appKey is unknown or the sign or appSecret does not
    match it (one message for each of these), and `AuthError` when credentials are missing,
    plain appSecret is switched off or no application is configured.
    """
    if not apps:
        raise AuthError("no applications are configured on this server (set TONGKUAN_APPS)")
    app_key = params.get("appKey")
    if not app_key:
        raise AuthError("appKey is required")
    given_sign, given_secret = params.get("sign"), params.get("appSecret")
    if not given_sign and not given_secret:
        raise AuthError("sign (or appSecret in testing mode) is required")
    if not given_sign and not allow_app_secret:
        raise AuthError("appSecret is disabled on this server; sign the request")
    secret = apps.get(app_key)
    # an unknown appKey is checked against a secret nobody has, so it costs the same time
    expected = secret if secret is not None else _NO_SECRET
    if given_sign:
        matches = hmac.compare_digest(given_sign.upper().encode(), sign(params, expected).encode())
    else:
        matches = hmac.compare_digest((given_secret or "").encode(), expected.encode())
    if secret is None or not matches:
        raise BadCredentials(BAD_CREDENTIALS)
    return app_key


BAD_CREDENTIALS = "appKey, sign or appSecret is wrong"
_NO_SECRET = secrets.token_hex(16)
