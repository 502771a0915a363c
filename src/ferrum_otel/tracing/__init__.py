"""Request tracing: ``request()``, ``@instrument``, ``record_request()`` and the tracker."""

from ._instrument import instrument
from ._noop import NoopTracker
from ._record import record_request
from ._request import current_request, request
from ._tracker import RequestTracker

__all__ = ["instrument", "record_request", "current_request", "request", "RequestTracker", "NoopTracker"]
