"""Owned C handles: ``close()`` on ``with`` exit and on garbage collection, and a close that
waits for the calls still using the handle."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, ClassVar, Optional, TypeVar

from . import _lib
from .errors import ClosedError

_C = TypeVar("_C", bound="_Closing")
_H = TypeVar("_H", bound="_Handle")


class _Closing:
    """``with`` and garbage collection both end in ``close()``."""

    if TYPE_CHECKING:
        def close(self) -> None: ...

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class _Handle(_Closing):
    """An owned C pointer. close() is idempotent; a close() while a call is using the handle
    (from another thread or from a callback) frees it when that call returns."""

    # the name of the duet_*_free function of the subclass's C object
    _free_fn: ClassVar[str] = None  # type: ignore[assignment]  # every subclass names one

    def __init__(self) -> None:
        self._ptr: Optional[int] = None
        self._state = threading.Lock()
        self._active = 0
        self._closed = False

    def _use(self) -> _Use:
        return _Use(self)

    def _acquire(self) -> int:
        with self._state:
            if self._closed or not self._ptr:
                raise ClosedError(f"this {type(self).__name__} is closed")
            self._active += 1
            return self._ptr

    def _release(self) -> None:
        with self._state:
            self._active -= 1
            ptr = None
            if self._closed and self._active == 0 and self._ptr:
                ptr, self._ptr = self._ptr, None
        if ptr:
            getattr(_lib.lib(), self._free_fn)(ptr)

    @property
    def closed(self) -> bool:
        return self._closed or not self._ptr

    def close(self) -> None:
        """Frees the C object (at once, or when the call using it returns). Idempotent."""
        state = getattr(self, "_state", None)
        if state is None:
            return
        with state:
            if self._closed:
                return
            self._closed = True
            ptr = None
            if self._active == 0 and self._ptr:
                ptr, self._ptr = self._ptr, None
        if ptr:
            getattr(_lib.lib(), self._free_fn)(ptr)

    def __enter__(self: _H) -> _H:
        if self.closed:
            raise ClosedError(f"this {type(self).__name__} is closed")
        return self


class _Use:
    """``with handle._use() as ptr``: the handle's pointer, kept from being freed until exit."""

    __slots__ = ("handle",)

    handle: _Handle

    def __init__(self, handle: _Handle) -> None:
        self.handle = handle

    def __enter__(self) -> int:
        return self.handle._acquire()

    def __exit__(self, *exc: object) -> None:
        self.handle._release()
