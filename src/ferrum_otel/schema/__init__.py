"""The attrs port of ferrum-types 0.6.0: every metrics type and what it references.

Classes carry the Rust names and the Rust field order.  They know nothing of JSON or
OpenTelemetry: :mod:`ferrum_otel.serde` reads and writes them exactly as serde does.
"""

from ._errors import SchemaError
from ._time import Duration, Timestamp, TimestampError
from .config import *
from .config import __all__ as _config_all
from .devices import *
from .devices import __all__ as _devices_all
from .ids import ClientId, ModelId, RequestId
from .engine_metrics import *
from .engine_metrics import __all__ as _metrics_all
from .models import *
from .models import __all__ as _models_all
from .sampling import *
from .sampling import __all__ as _sampling_all

__all__ = sorted(
    {
        "SchemaError", "Timestamp", "TimestampError", "Duration", "RequestId", "ModelId", "ClientId",
        *_config_all, *_devices_all, *_metrics_all, *_models_all, *_sampling_all,
    }
)
