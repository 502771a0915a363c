"""Request tracing: ``request()``, ``@instrument``, ``record_request()`` and the tracker."""

from ._instrument import instrument
from ._noop import NoopTracker
from ._record import record_request
from ._request import current_request, request
from ._segment import Segment, continue_request
from ._tracker import RequestTracker

__all__ = [
    "NoopTracker",
    "RequestTracker",
    "Segment",
    "continue_request",
    "current_request",
    "instrument",
    "record_request",
    "request",
]
