"""Identifier newtypes: ``RequestId`` wraps a UUID, ``ModelId`` and ``ClientId`` a string."""

from __future__ import annotations

import os
import random
import re
import uuid

from ._errors import SchemaError

__all__ = ["ClientId", "ModelId", "RequestId", "parse_uuid"]

# The four text forms the Rust `uuid` crate reads: hyphenated, simple, urn and braced.
# Python's UUID() is looser (it drops hyphens anywhere), so the forms are matched here.
_UUID_FORMS = re.compile(
    r"(?:urn:uuid:)?(?P<h>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    r"|\{(?P<b>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}"
    r"|(?P<s>[0-9a-fA-F]{32})",
    re.ASCII,
)


def parse_uuid(text: str) -> RequestId:
    m = _UUID_FORMS.fullmatch(text)
    if m is None:
        raise SchemaError(f"{text[:60]!r} is not a UUID (hyphenated, simple, urn:uuid: or braced)")
    return RequestId(hex=m["h"] or m["b"] or m["s"])


class RequestId(uuid.UUID):
    """A request's UUID; ``str()`` gives the lowercase hyphenated form the engine writes."""

    __slots__ = ()

    @classmethod
    def new(cls) -> RequestId:
        """A random (v4) id, as ``RequestId::new()`` makes.

        The bits come from a generator seeded from ``os.urandom`` (and reseeded in a forked
        child): request ids need uniqueness, not secrecy, and a system call per request is
        what a per-request hot path cannot afford.
        """
        value = _random_bits(128) & _V4_CLEAR | _V4_SET
        obj = object.__new__(cls)
        _set_int(obj, value)
        _set_is_safe(obj, uuid.SafeUUID.unknown)
        return obj

    @classmethod
    def parse(cls, text: str) -> RequestId:
        return parse_uuid(text)

    @classmethod
    def from_uuid(cls, value: uuid.UUID) -> RequestId:
        return value if type(value) is cls else cls(int=value.int)

    def __repr__(self) -> str:
        return f"RequestId('{self}')"


class ModelId(str):
    """A model's name, such as ``meta-llama/Llama-3.1-8B-Instruct``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"ModelId({str.__repr__(self)})"


class ClientId(str):
    """The caller or tenant a request came from."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"ClientId({str.__repr__(self)})"


_rng = random.Random(os.urandom(32))
_random_bits = _rng.getrandbits
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _rng.seed(os.urandom(32)))

# Version 4 (random) and the RFC 4122 variant, as uuid.uuid4() sets them.
_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & (2**128 - 1)
_V4_SET = (4 << 76) | (0x8000 << 48)
_set_int = uuid.UUID.__dict__["int"].__set__
_set_is_safe = uuid.UUID.__dict__["is_safe"].__set__
