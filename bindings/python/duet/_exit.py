"""Interpreter exit while duet calls that call back into Python still run on other threads.

A C callback that re-enters Python after the interpreter has started finalizing would end its
thread inside duet's frames, which aborts the process ("FATAL: exception not rethrown"). At exit,
before finalizing, every such call in flight is told to cancel (its callbacks return "cancel" from
then on, and a chat stream's worker is woken) and is waited for, for at most ``WAIT_S`` seconds:
each ends within one decoding step."""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Optional

WAIT_S = 30.0

_cond = threading.Condition()
_in_flight: "weakref.WeakKeyDictionary[object, Optional[str]]" = weakref.WeakKeyDictionary()
_exiting = False


def exiting() -> bool:
    """True once the interpreter is exiting: callbacks cancel their calls."""
    return _exiting


def begin(call: object, wake: Optional[str] = None) -> None:
    """`call` may call back into Python until `end(call)` (or until it is garbage); its method
    named `wake`, if given, makes it notice a cancel it is waiting on."""
    with _cond:
        _in_flight[call] = wake


def end(call: object) -> None:
    with _cond:
        _in_flight.pop(call, None)
        _cond.notify_all()


@atexit.register
def _drain() -> None:
    global _exiting
    with _cond:
        _exiting = True
        wakes = [getattr(call, name) for call, name in _in_flight.items() if name is not None]
    for wake in wakes:
        wake()
    with _cond:
        _cond.wait_for(lambda: len(_in_flight) == 0, timeout=WAIT_S)
