"""The exception tree of tongkuan.

    TongkuanError
      ConfigError
      AuthError                 credentials missing, or not accepted here
        BadCredentials          credentials given but wrong (one message for every kind)
      RateLimited               over an allowance; wait `retry_after` seconds
      ParameterError            a request parameter that breaks its rule
      ImageError
        InvalidImage            bytes that are not a supported, sane image
        ImageTooLarge           bytes or pixels over the limit
        ImageFetchError         a picUrl that could not be fetched
          ForbiddenAddress      the URL or a redirect points where we must not go
        ImageNotFound           an imageId that was never uploaded
      VisionError
        ModelNotFound
        ModelLoadError
        CannotSearchWords
      StoreError
        ProductNotFound
        PictureNotFound
        CatalogConflict
        DimensionMismatch
        StoreUnavailable        a catalog or vector server that cannot be reached now
          ModelSwitched         the catalog now holds another model's vectors
        InvalidValue            a value the store cannot hold
      IngestError
        JobNotFound
      RecordError               a source record that cannot become a product
      BackupError               a backup or restore that cannot be made as asked
      CheckSetError             a check set line that cannot be a check
      CannotLearn               too little in the catalog to learn from
      ServiceBusy               every slot for this kind of work is taken; retry shortly
        LookupsBusy             slow names hold the picture hosts' name lookups (an ImageFetchError too)

Only `tongkuan.api.envelope` knows HTTP status codes and envelope codes. A `RecordError` has
none: it is caught where it arises (ingestion counts the record as failed, the admin API
answers a `ParameterError`).
"""

from __future__ import annotations

from enum import StrEnum


class TongkuanError(Exception):
    """Base class of every error tongkuan raises on purpose."""


class ConfigError(TongkuanError):
    """Settings that cannot work together."""


class AuthError(TongkuanError):
    """A request whose appKey, sign, appSecret or admin token is missing or not accepted here."""


class BadCredentials(AuthError):
    """Credentials given but wrong; one message for every kind, so a caller cannot tell which."""


class RateLimited(TongkuanError):
    """An application or client address over its allowance; `retry_after` is the seconds to wait."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ParameterError(TongkuanError):
    """A request parameter that breaks its rule; the message names both."""


class ImageError(TongkuanError):
    """A query or catalog image that cannot be used."""


class InvalidImage(ImageError):
    """Bytes that do not decode as a supported image."""


class ImageTooLarge(ImageError):
    """An image over the byte or pixel limit."""


class ImageFetchError(ImageError):
    """A URL that could not be fetched (network, status, timeout)."""


class ForbiddenAddress(ImageFetchError):
    """A URL, or one of its redirects, that resolves to an address we refuse to contact."""


class ImageNotFound(ImageError):
    """An uploaded image id that does not exist."""


class VisionError(TongkuanError):
    """A model that cannot be found, loaded or run."""


class ModelNotFound(VisionError):
    """A model name or path that does not exist."""


class ModelLoadError(VisionError):
    """A model file that exists but cannot be loaded."""


class CannotSearchWords(VisionError):
    """A search by words with a model that has no text tower."""


class StoreError(TongkuanError):
    """The catalog or the vector index failed."""


class ProductNotFound(StoreError):
    """An itemId that is not in the catalog."""


class DimensionMismatch(StoreError):
    """Vectors whose dimension differs from the index's."""


class IngestError(TongkuanError):
    """An ingestion run that cannot start (bad input file, unknown format)."""


class PictureNotFound(StoreError):
    """A picture name that a product does not have."""


class Backend(StrEnum):
    """A server the service depends on, by kind: what an outage is reported as, never its address."""

    CATALOG = "catalog store"
    VECTOR_INDEX = "vector index"


class StoreUnavailable(StoreError):
    """A catalog or vector server cannot be reached now, or did not answer within the
    deadline; the request may be retried. `backend` says which, by kind; the message may
    hold the server's address and its own error, so it is for the log, not for clients."""

    def __init__(self, message: str, backend: Backend = Backend.CATALOG) -> None:
        super().__init__(message)
        self.backend = backend

    def __reduce__(self) -> tuple[type[StoreUnavailable], tuple[str, Backend]]:
        return type(self), (str(self), self.backend)  # kept across processes (Ray workers)

    @property
    def public_message(self) -> str:
        """What a client is told: the kind of outage, nothing about where or why."""
        return f"the {self.backend} is unavailable"


class ModelSwitched(StoreUnavailable):
    """The catalog switched to another model (`tongkuan tune`) after this process opened it:
    vectors of the old model must not be written; the process reopens the catalog."""


class InvalidValue(StoreError):
    """A value the catalog store cannot hold (PostgreSQL: NUL in text, numbers out of range)."""


class CatalogConflict(StoreError):
    """A catalog change that would break a rule (the last picture of a product, a changed itemId)."""


class CannotLearn(TongkuanError):
    """A catalog with too little in it to learn from (a whitening, a tuned model), or
    learning settings out of range."""


class JobNotFound(IngestError):
    """An import job id that does not exist."""


class RecordError(TongkuanError):
    """A record (an ingest line, an admin change) that cannot become a product; the message names the field."""


class BackupError(TongkuanError):
    """A backup or restore that cannot be made as asked (no catalog, a damaged archive, a target not empty)."""


class CheckSetError(TongkuanError):
    """A check set (labelled query pictures) with a line that cannot be a check."""


class ServiceBusy(TongkuanError):
    """Work refused because its shared limit is reached (picture downloads or decode memory
    in use): waiting would tie up a thread other requests need; the client retries shortly."""


class LookupsBusy(ServiceBusy, ImageFetchError):
    """A picture host's name not looked up: slow names hold every lookup, or their domain's
    share. Busy to a request (503); to an import, one picture that could not be fetched."""
