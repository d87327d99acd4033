"""What the client raises. Transport failures (no connection, a timeout) stay httpx's own
`httpx.TransportError`; everything the service answers is mapped here:

    ClientError
      ApiError                  an error envelope: `.code`, `.message`, `.trace_id` (1009 and
                                other codes without a class of their own)
        BadRequestError         400 (and 413): a parameter or a picture broke a rule
        AuthenticationError     401: appKey, sign or appSecret
        RateLimitError          429: retried first, raised when the retries are spent
        ServerError             500 and the other 5xx codes
          ServiceUnavailableError  503: retried first, like 429
      ProtocolError             an answer that is not the envelope, or data of the wrong shape
"""

from __future__ import annotations

import httpx


class ClientError(Exception):
    """Base of every error the client raises about an answer."""


class ApiError(ClientError):
    """The service answered with an error envelope (`code` other than 200).

    `code` is the envelope's code (what DAJI clients check), `status_code` the HTTP status,
    `retry_after` the seconds the service asked to wait (429 and 503), if it said.
    """

    def __init__(
        self,
        code: int,
        message: str,
        *,
        status_code: int,
        trace_id: str | None = None,
        retry_after: float | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status_code = status_code
        self.trace_id = trace_id
        self.retry_after = retry_after
        self.response = response


class BadRequestError(ApiError):
    """A parameter or the picture breaks a rule; the message names both."""


class AuthenticationError(ApiError):
    """The appKey is unknown, or the sign or appSecret does not match it."""


class RateLimitError(ApiError):
    """The appKey is over its rate limit, still after every retry."""


class ServerError(ApiError):
    """The service failed on its side."""


class ServiceUnavailableError(ServerError):
    """A store behind the service cannot be reached, still after every retry."""


class ProtocolError(ClientError):
    """The answer is not the DAJI envelope, or its data is not the shape the route promises."""


_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequestError,
    413: BadRequestError,
    401: AuthenticationError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def error_for(
    code: int,
    message: str,
    *,
    status_code: int,
    trace_id: str | None = None,
    retry_after: float | None = None,
    response: httpx.Response | None = None,
) -> ApiError:
    """The most specific `ApiError` for an envelope code."""
    cls = _BY_CODE.get(code) or (ServerError if 500 <= code < 600 else ApiError)
    return cls(code, message, status_code=status_code, trace_id=trace_id, retry_after=retry_after, response=response)
