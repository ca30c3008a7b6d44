"""Exceptions raised by duet: one class per status code of ``duet.h``.

Every exception is a :class:`Error`, which carries ``status`` (the C status code, an int) and
``status_name`` (e.g. ``"DUET_STATUS_UNKNOWN_PARAM"``). Errors detected in Python before a call
reaches the library use the status the library itself would have given (a closed handle is
``NullPointer``, a string with a NUL character ``InvalidArgument``, a ``str`` that cannot be
encoded as UTF-8 ``InvalidUtf8``). Only :class:`LibraryNotFound` has ``status`` ``None``: it is
raised before there is a library to ask. :class:`ModelFileMissing`, :class:`IoError` and
:class:`LibraryNotFound` are also ``OSError`` (and :class:`DeadlineExceeded` a ``TimeoutError``).
"""

from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
    "Error", "InvalidArgument", "NullPointer", "InvalidUtf8", "UnknownParam", "InvalidParam",
    "RuntimeNotFound", "RuntimeVersion", "ModelFileMissing", "ModelInvalid", "TokenizerError",
    "InputTooLong", "OnnxRuntimeError", "ProviderUnavailable", "IoError", "InternalError",
    "IndexFileError", "Cancelled", "DeadlineExceeded", "InvalidHandle", "Unsupported", "IndexModelMismatch", "ModelBusy", "OverBudget", "UnknownLanguage", "PanicError", "ClosedError", "BusyError", "LibraryNotFound",
]

# The numbers of duet_status in include/duet.h (part of the ABI, never renumbered).
STATUS_NAMES: Dict[int, str] = {
    0: "DUET_STATUS_OK",
    1: "DUET_STATUS_INVALID_ARGUMENT",
    2: "DUET_STATUS_NULL_POINTER",
    3: "DUET_STATUS_INVALID_UTF8",
    4: "DUET_STATUS_UNKNOWN_PARAM",
    5: "DUET_STATUS_INVALID_PARAM",
    6: "DUET_STATUS_RUNTIME_NOT_FOUND",
    7: "DUET_STATUS_RUNTIME_VERSION",
    8: "DUET_STATUS_MODEL_FILE_MISSING",
    9: "DUET_STATUS_MODEL_INVALID",
    10: "DUET_STATUS_TOKENIZER",
    11: "DUET_STATUS_INPUT_TOO_LONG",
    12: "DUET_STATUS_ONNX_RUNTIME",
    13: "DUET_STATUS_PROVIDER_UNAVAILABLE",
    14: "DUET_STATUS_IO",
    15: "DUET_STATUS_INTERNAL",
    16: "DUET_STATUS_INDEX_FILE",
    17: "DUET_STATUS_CANCELLED",
    18: "DUET_STATUS_DEADLINE_EXCEEDED",
    19: "DUET_STATUS_INVALID_HANDLE",
    20: "DUET_STATUS_UNSUPPORTED",
    21: "DUET_STATUS_INDEX_MODEL_MISMATCH",
    22: "DUET_STATUS_BUSY",
    23: "DUET_STATUS_OVER_BUDGET",
    24: "DUET_STATUS_UNKNOWN_LANGUAGE",
    100: "DUET_STATUS_PANIC",
}


class Error(Exception):
    """A failed duet call. ``status``: the C status code; ``status_name``: its name;
    ``message``: the library's explanation (``duet_last_error_message()``)."""

    status: Optional[int] = None

    def __init__(self, message: str = "", status: Optional[int] = None) -> None:
        if status is not None:
            self.status = int(status)
        self.message = message
        super().__init__(message)

    @property
    def status_name(self) -> Optional[str]:
        if self.status is None:
            return None
        return STATUS_NAMES.get(self.status, "DUET_STATUS_UNKNOWN")

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        return f"{self.status_name} ({self.status}): {self.message}"


class InvalidArgument(Error, ValueError):
    """An argument is out of range or inconsistent with another."""
    status = 1


class NullPointer(Error):
    """A required pointer was NULL (in Python: a closed handle, see ClosedError)."""
    status = 2


class InvalidUtf8(Error, ValueError):
    """A string was not valid UTF-8."""
    status = 3


class UnknownParam(Error, KeyError):
    """A params/options key does not exist; the message lists the valid keys."""
    status = 4

    __str__ = Error.__str__  # KeyError would repr() the message


class InvalidParam(Error, ValueError):
    """A params/options value has the wrong type or is out of range."""
    status = 5


class RuntimeNotFound(Error):
    """libonnxruntime was not found; the message names every place tried."""
    status = 6


class RuntimeVersion(Error):
    """libonnxruntime is too old for this build."""
    status = 7


class ModelFileMissing(Error, OSError):
    """A file the model needs is missing; the message names it. Also an ``OSError``."""
    status = 8

    def __init__(self, message: str = "") -> None:
        Error.__init__(self, message)

    __str__ = Error.__str__  # not OSError's "[Errno ...]" form


class ModelInvalid(Error):
    """A model file is malformed or does not fit the others."""
    status = 9


class TokenizerError(Error):
    """The tokenizer failed on an input or output."""
    status = 10


class InputTooLong(Error, ValueError):
    """An input is longer than max_input_tokens and truncate_input is off."""
    status = 11


class OnnxRuntimeError(Error):
    """ONNX Runtime failed while running a graph."""
    status = 12


class ProviderUnavailable(Error):
    """A requested execution provider could not be used (strict mode)."""
    status = 13


class IoError(Error, OSError):
    """A file could not be read or written. Also an ``OSError``."""
    status = 14

    def __init__(self, message: str = "") -> None:
        Error.__init__(self, message)

    __str__ = Error.__str__  # not OSError's "[Errno ...]" form


class InternalError(Error):
    """A bug in duet."""
    status = 15


class IndexFileError(Error):
    """An index file is corrupt, truncated, or of another format version."""
    status = 16


class Cancelled(Error):
    """A CancelToken given in the params was cancelled (from any thread)."""
    status = 17


class DeadlineExceeded(Error, TimeoutError):
    """The call ran past the params' ``timeout_ms``."""
    status = 18

    def __init__(self, message: str = "") -> None:
        Error.__init__(self, message)

    __str__ = Error.__str__


class InvalidHandle(Error):
    """A freed, foreign or wrongly typed handle reached the library (the Python classes never
    pass one: a closed handle raises ClosedError first)."""
    status = 19


class Unsupported(Error):
    """The model cannot do this call (generation, summarize, chat or rerank on an embedding
    model)."""
    status = 20


class IndexModelMismatch(Error):
    """The index was embedded by another model (graph, tokenizer, pooling or width differ)."""
    status = 21


class PanicError(Error):
    """duet panicked; the process is unharmed, the object involved should be closed."""
    status = 100


class ClosedError(NullPointer, ValueError):
    """The handle (Model, Chat, Index, ...) was closed; status NullPointer (2)."""


class ModelBusy(Error):
    """The model's scheduler already holds ``max_requests`` requests (a model option); retry
    later."""
    status = 22


class OverBudget(Error, MemoryError):
    """A request's worst-case memory is over the model's ``memory_budget_mb`` (a model option);
    ask for fewer inputs, beams or tokens, or raise the budget."""
    status = 23


class UnknownLanguage(Error, ValueError):
    """translate: the model does not know the language code (the message lists the ones it
    knows), or a one-pair model was asked for another pair."""
    status = 24


class BusyError(InvalidArgument):
    """A Chat was used again from inside one of its own callbacks (a Chat serves one call at
    a time); status InvalidArgument (1)."""


class LibraryNotFound(Error, OSError):
    """libduet could not be loaded (status None: raised before there is a library)."""

    def __init__(self, message: str = "") -> None:
        Error.__init__(self, message)

    __str__ = Error.__str__


_BY_STATUS: Dict[Optional[int], Type[Error]] = {
    cls.status: cls
    for cls in (InvalidArgument, NullPointer, InvalidUtf8, UnknownParam, InvalidParam, RuntimeNotFound,
                RuntimeVersion, ModelFileMissing, ModelInvalid, TokenizerError, InputTooLong,
                OnnxRuntimeError, ProviderUnavailable, IoError, InternalError, IndexFileError, Cancelled,
                DeadlineExceeded, InvalidHandle, Unsupported, IndexModelMismatch, ModelBusy, OverBudget, UnknownLanguage,
                PanicError)
}


def error_for_status(status: int, message: str) -> Error:
    """The exception for a non-zero status code (a plain Error for unknown codes)."""
    cls = _BY_STATUS.get(int(status))
    if cls is None:
        return Error(message, status=status)
    return cls(message)
