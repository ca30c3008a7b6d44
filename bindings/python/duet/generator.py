"""Generator: a generation the caller drives, one event at a time (a plain iterator, no thread)."""

from __future__ import annotations

import ctypes
from typing import List, NamedTuple, Optional, Union

from . import _lib
from ._handle import _Handle
from ._lib import check
from .results import FINISH_REASONS, Generation, _read_result


class Event(NamedTuple):
    """What one step decided. ``kind`` is "text" (``piece`` of input ``input``, ``token_id``
    the token that completed it or -1) or "finished" (input ``input`` ended, for
    ``finish_reason``)."""

    kind: str
    input: int
    piece: str
    token_id: int
    finish_reason: Optional[str]


class _CEvent(ctypes.Structure):
    """duet_event"""
    _fields_ = [("kind", ctypes.c_int32), ("input_index", ctypes.c_size_t), ("piece", ctypes.c_void_p),
                ("piece_len", ctypes.c_size_t), ("token_id", ctypes.c_int32), ("finish_reason", ctypes.c_int32)]


_TEXT, _FINISHED, _DONE = 0, 1, 2


class Generator(_Handle):
    """From ``Model.generator(inputs, **params)``. Iterating yields Events until the generation
    ends; ``cancel()`` (any thread) stops it at the next step, and the iteration then ends. After
    the iteration, ``result`` is the Generation (or the list of them, for a list of inputs). On a
    model with ``scheduling`` on (the default) the request is decoded by the model's scheduler,
    batched with other callers'; each ``next()`` waits for the next event without holding the
    GIL. ``close()`` (or leaving a ``with`` block) ends it early."""

    _free_fn = "duet_generator_free"

    def __init__(self, model_ptr: int, array: ctypes.Array, inputs: List[str], params: Optional[int],
                 single: bool) -> None:
        super().__init__()
        out = ctypes.c_void_p()
        check(_lib.lib().duet_generator_new(model_ptr, array, len(inputs), params, ctypes.byref(out)))
        self._ptr = out.value
        self._inputs = inputs
        self._single = single
        self._result: Optional[List[Generation]] = None

    def __iter__(self) -> Generator:
        return self

    def __next__(self) -> Event:
        if self._result is not None:
            raise StopIteration
        event = _CEvent()
        with self._use() as ptr:
            check(_lib.lib().duet_generator_next(ptr, ctypes.byref(event)))
            if event.kind == _DONE:
                out = ctypes.c_void_p()
                check(_lib.lib().duet_generator_result(ptr, ctypes.byref(out)))
                try:
                    self._result = _read_result(out.value, self._inputs)
                finally:
                    _lib.lib().duet_result_free(out.value)
                raise StopIteration
            if event.kind == _TEXT:
                piece = ctypes.string_at(event.piece, event.piece_len).decode("utf-8")
                return Event("text", event.input_index, piece, event.token_id, None)
        return Event("finished", event.input_index, "", -1, FINISH_REASONS.get(event.finish_reason, "?"))

    def cancel(self) -> None:
        """Stops the generation at its next step; other requests on the model go on. Thread-safe."""
        with self._use() as ptr:
            check(_lib.lib().duet_generator_cancel(ptr))

    @property
    def result(self) -> Union[None, Generation, List[Generation]]:
        """The Generation(s), once the iteration has ended (None before)."""
        if self._result is None:
            return None
        return self._result[0] if self._single else self._result
