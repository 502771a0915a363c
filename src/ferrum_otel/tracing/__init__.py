"""Request tracing: ``request()``, ``@instrument``, ``record_request()`` and the tracker."""

from ._instrument import instrument
from ._noop import NoopTracker
from ._record import record_request
from ._request import current_request, request
from ._tracker import RequestTracker

__all__ = ["NoopTracker", "RequestTracker", "current_request", "instrument", "record_request", "request"]
