"""Python bindings for duet (ctypes over the C ABI of libduet.so).

    import duet
    with duet.Model("tests/fixtures/t5-tiny", max_new_tokens=20) as model:
        print(model.generate("summarize: ...").text)

libduet is found through ``duet.load_library(path)`` / ``Model(..., library=path)``, else
``$DUET_LIBRARY``, else a ``libduet.so`` inside this package folder, else the system loader.
ONNX Runtime is found by libduet itself (``$DUET_ORT_LIBRARY``, ``duet.runtime_init(path)`` or
the model option ``ort_library``). See README.md next to pyproject.toml for the whole API.
"""

# The package's modules: _lib (finding and loading libduet, the C prototypes), errors (the
# exceptions), _convert (argument encoding, the params and options objects), _hooks (the C
# callbacks), _handle (owned C handles), results, model, chat, cancel and index (the classes of
# those names). Everything public is re-exported here and defined in one of them.

from __future__ import annotations

import numbers
from typing import Optional

from . import _lib
from ._convert import PathArg, _encode_path
from ._lib import Callbacks, PROGRESS_CALLBACK, TOKEN_CALLBACK, check, library_path, load_library  # noqa: F401
from .cancel import CancelToken
from .chat import Chat, ChatStream
from .errors import (BusyError, Cancelled, ClosedError, DeadlineExceeded, Error, IndexFileError, IndexModelMismatch, InputTooLong,
                     ModelBusy, OverBudget, UnknownLanguage,
                     InternalError, InvalidArgument, InvalidHandle, InvalidParam, InvalidUtf8, IoError, LibraryNotFound,
                     ModelFileMissing, ModelInvalid, NullPointer, OnnxRuntimeError, PanicError,
                     ProviderUnavailable, RuntimeNotFound, RuntimeVersion, TokenizerError,
                     UnknownParam, Unsupported, error_for_status)  # noqa: F401
from .generator import Event, Generator
from .index import Index
from .model import Model
from .results import FINISH_REASONS, ChatReply, Generation, Reply, Sequence, Summary, Translation  # noqa: F401 - FINISH_REASONS as before

__version__ = "0.1.0"

__all__ = [
    "Model", "Chat", "ChatStream", "Index", "CancelToken", "Generation", "Sequence", "Reply", "Summary", "Translation", "ChatReply",
    "load_library", "library_path", "runtime_init", "version", "status_name", "Generator", "Event",
    "Error", "InvalidArgument", "NullPointer", "InvalidUtf8", "UnknownParam", "InvalidParam",
    "RuntimeNotFound", "RuntimeVersion", "ModelFileMissing", "ModelInvalid", "TokenizerError",
    "InputTooLong", "OnnxRuntimeError", "ProviderUnavailable", "IoError", "InternalError",
    "IndexFileError", "Cancelled", "DeadlineExceeded", "InvalidHandle", "Unsupported", "IndexModelMismatch",
    "ModelBusy", "OverBudget", "UnknownLanguage", "PanicError", "ClosedError", "BusyError", "LibraryNotFound",
]


def version() -> str:
    """The version of the loaded libduet, "MAJOR.MINOR.PATCH"."""
    text: str = _lib.lib().duet_version().decode("utf-8")
    return text


def runtime_init(ort_library: Optional[PathArg] = None) -> None:
    """Loads ONNX Runtime now (optional: opening a model does it). ``ort_library``: a path, or
    None for libduet's own lookup ($DUET_ORT_LIBRARY, $ORT_DYLIB_PATH, ...). Later calls do
    nothing."""
    path = None if ort_library is None else _encode_path(ort_library, "ort_library")
    check(_lib.lib().duet_runtime_init(path))


def status_name(status: int) -> str:
    """The name of a status code, e.g. status_name(4) == "DUET_STATUS_UNKNOWN_PARAM"."""
    if not isinstance(status, numbers.Integral) or not -(1 << 31) <= int(status) < (1 << 31):
        raise TypeError("status must be an int32")
    text: str = _lib.lib().duet_status_name(int(status)).decode("utf-8")
    return text
