"""CancelToken: a flag that cancels, from any thread, the calls given it."""

from __future__ import annotations

import ctypes

from . import _lib
from ._handle import _Handle
from ._lib import check


class CancelToken(_Handle):
    """A flag that cancels, from any thread, every call given it as ``cancel_token=token``
    (such a call raises duet.Cancelled at its next decoding step). ``cancel()``, ``reset()``,
    ``close()``. Needs a libduet with cancel tokens (NotImplementedError otherwise).
    A timeout needs no token: pass ``timeout_ms=...`` (duet.DeadlineExceeded)."""

    _free_fn = "duet_cancel_token_free"

    def __init__(self) -> None:
        super().__init__()
        L = _lib.lib()
        if not hasattr(L, "duet_cancel_token_new"):
            raise NotImplementedError(f"this libduet ({_lib.library_path()}) has no cancel tokens")
        out = ctypes.c_void_p()
        check(L.duet_cancel_token_new(ctypes.byref(out)))
        self._ptr = out.value

    def cancel(self) -> None:
        """Cancels every call watching this token. Thread-safe."""
        with self._use() as ptr:
            check(_lib.lib().duet_cancel_token_cancel(ptr))

    def reset(self) -> None:
        """Makes the token usable again."""
        with self._use() as ptr:
            check(_lib.lib().duet_cancel_token_reset(ptr))
