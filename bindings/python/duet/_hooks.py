"""Python callables behind the C callbacks (token streaming and progress)."""

from __future__ import annotations

import ctypes
from typing import Any, Callable, Optional

from . import _exit
from ._lib import Callbacks, PROGRESS_CALLBACK, TOKEN_CALLBACK, check

# stream(piece, input_index, token_id) for generate, stream(piece) elsewhere, and
# progress(done, total, level): returning exactly True cancels the call.
TokenCallback = Callable[..., Any]
ProgressCallback = Callable[[int, int, int], Any]


class _Hooks:
    """Python callables behind C callbacks. An exception raised by a callable is caught (it must
    not cross C), cancels the call (non-zero return) and is re-raised by `finish`."""

    def __init__(self, on_token: Optional[TokenCallback] = None, on_progress: Optional[ProgressCallback] = None,
                 token_arity: int = 3) -> None:
        if on_token is not None and not callable(on_token):
            raise TypeError(f"stream must be callable, not {type(on_token).__name__}")
        if on_progress is not None and not callable(on_progress):
            raise TypeError(f"progress must be callable, not {type(on_progress).__name__}")
        self.error: Optional[BaseException] = None
        self._token_fn, self._progress_fn, self._arity = on_token, on_progress, token_arity
        # the CFUNCTYPE objects must stay alive while C may call them: they live on self
        self.c_token = TOKEN_CALLBACK(self._on_token) if on_token is not None else TOKEN_CALLBACK()
        self.c_progress = PROGRESS_CALLBACK(self._on_progress) if on_progress is not None else PROGRESS_CALLBACK()
        self.struct = Callbacks(self.c_token, self.c_progress, None)

    def __enter__(self) -> "_Hooks":
        """Around the C call that may call back: interpreter exit waits for it (duet._exit)."""
        _exit.begin(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _exit.end(self)

    def _on_token(self, _user_data: Optional[int], input_index: int, piece: int, piece_len: int, token_id: int) -> int:
        if self.error is not None or _exit.exiting():
            return 1
        try:
            assert self._token_fn is not None  # C calls this only when it was given
            text = ctypes.string_at(piece, piece_len).decode("utf-8") if piece_len else ""
            if self._arity == 1:
                verdict = self._token_fn(text)
            else:
                verdict = self._token_fn(text, input_index, token_id)
            return 1 if verdict is True else 0
        except BaseException as e:  # noqa: BLE001 - nothing may unwind into C
            self.error = e
            return 1

    def _on_progress(self, _user_data: Optional[int], done: int, total: int, level: int) -> int:
        if self.error is not None or _exit.exiting():
            return 1
        try:
            assert self._progress_fn is not None  # C calls this only when it was given
            return 1 if self._progress_fn(done, total, level) is True else 0
        except BaseException as e:  # noqa: BLE001
            self.error = e
            return 1

    def finish(self, status: int) -> None:
        """After the C call: the callback's exception first, else the status."""
        if self.error is not None:  # the callback's exception is what the caller must see
            err, self.error = self.error, None
            raise err
        check(status)
