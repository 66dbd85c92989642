"""The errors the connector raises, one tree under a single root.

Each class tells the caller what to do about it::

    LogfireSyncError                      anything raised by logfire-sync
    ├── ConfigurationError (ValueError)   fix the configuration
    ├── AuthenticationError               fix the read token (HTTP 401, 403)
    ├── QueryError                        fix the query or its options (400, 422)
    ├── DestinationError                  check that the destination is reachable
    └── RetryableError                    worth trying again; has .retry_after
        ├── RateLimitedError              wait, then retry (429)
        ├── PipelineBusyError             another run of the pipeline is on
        └── TransientError                retry (5xx, dropped connection, timeout)
            └── IncompleteResponseError   the response stopped early; retry

Errors that come from an HTTP response carry its ``status_code``; the others
have ``status_code = None``. The message always includes what the server said.
:func:`causes` walks the errors behind one, as dlt wraps what fails in its steps.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "DestinationError",
    "IncompleteResponseError",
    "LogfireSyncError",
    "PipelineBusyError",
    "QueryError",
    "RateLimitedError",
    "RetryableError",
    "TransientError",
    "causes",
]


class LogfireSyncError(Exception):
    """The root of every error logfire-sync raises."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class ConfigurationError(LogfireSyncError, ValueError):
    """A setting is missing or wrong; retrying cannot help."""


class AuthenticationError(LogfireSyncError):
    """The service refused the read token."""


class QueryError(LogfireSyncError):
    """The service refused the query or the request options."""


class DestinationError(LogfireSyncError):
    """The destination could not be read or written; check it is reachable."""


class RetryableError(LogfireSyncError):
    """A failure that may pass if the same request is sent again.

    ``retry_after`` is how many seconds the service asked to be left alone
    (``Retry-After``, on a 429 or a 5xx), or None if it did not say.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after


class RateLimitedError(RetryableError):
    """The service asked to slow down."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 429,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, retry_after=retry_after)


class PipelineBusyError(RetryableError):
    """Another run of the same pipeline holds its lock; try again once it ends."""


class TransientError(RetryableError):
    """A server error, a dropped connection or a timeout."""


class IncompleteResponseError(TransientError):
    """The response ended before all of its data arrived."""


def causes(error: BaseException) -> Iterator[BaseException]:
    """The error and the exceptions behind it, nearest first.

    dlt wraps what fails inside a pipeline step, so the error that tells what
    happened is often a cause of the one raised.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
