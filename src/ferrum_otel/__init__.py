"""ferrum-otel: OpenTelemetry for LLM inference.

    import ferrum_otel
    ferrum_otel.configure(service_name="my-engine")

    @ferrum_otel.instrument(model="llama-3-8b")
    def generate(prompt): ...

The public surface is what ``__all__`` lists; everything else lives in private modules.
"""

from ._config import ConfigurationError, Telemetry, configure, shutdown
from ._delivery import Delivery, SignalDelivery
from ._log import InvalidArgument
from ._version import __version__
from .metrics.engine import observe_engine
from .metrics.gpu import gpu_snapshot, instrument_gpu
from .metrics.memory import memory_snapshot, system_snapshot
from .tracing import (
    NoopTracker,
    RequestTracker,
    Segment,
    continue_request,
    current_request,
    instrument,
    record_request,
    request,
)

__all__ = [
    "ConfigurationError",
    "Delivery",
    "InvalidArgument",
    "NoopTracker",
    "RequestTracker",
    "Segment",
    "SignalDelivery",
    "Telemetry",
    "__version__",
    "configure",
    "continue_request",
    "current_request",
    "gpu_snapshot",
    "instrument",
    "instrument_gpu",
    "memory_snapshot",
    "observe_engine",
    "record_request",
    "request",
    "shutdown",
    "system_snapshot",
]
