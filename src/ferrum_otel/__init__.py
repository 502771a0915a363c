"""ferrum-otel: OpenTelemetry for LLM inference.

The public surface is what ``__all__`` lists; everything else lives in private modules.
"""

from ._version import __version__

__all__ = ["__version__"]
