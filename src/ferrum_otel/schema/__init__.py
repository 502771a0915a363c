"""The attrs port of ferrum-types 0.6.0: every metrics type and what it references.

Classes carry the Rust names and the Rust field order.  They know nothing of JSON or
OpenTelemetry: :mod:`ferrum_otel.serde` reads and writes them exactly as serde does.
"""

from . import config, devices, engine_metrics, models, sampling
from ._errors import SchemaError
from ._time import Duration, Timestamp, TimestampError
from .config import *  # noqa: F403 - each module's __all__ is the public surface
from .devices import *  # noqa: F403
from .engine_metrics import *  # noqa: F403
from .ids import ClientId, ModelId, RequestId
from .models import *  # noqa: F403
from .sampling import *  # noqa: F403

# In the list form a type checker reads, so `from ferrum_otel.schema import X` type-checks.
__all__ = ["ClientId", "Duration", "ModelId", "RequestId", "SchemaError", "Timestamp", "TimestampError"]
__all__ += config.__all__
__all__ += devices.__all__
__all__ += engine_metrics.__all__
__all__ += models.__all__
__all__ += sampling.__all__
