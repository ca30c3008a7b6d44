"""Finding and loading libduet, and the ctypes prototypes of every C function used."""

import ctypes
import ctypes.util
import os
import threading

from .errors import Error, LibraryNotFound, error_for_status

# The C ABI major this package was written for (DUET_ABI_MAJOR in duet.h), checked with
# duet_plugin_v1(ABI_MAJOR, &error), which refuses another major.
ABI_MAJOR = 1

c_size_p = ctypes.POINTER(ctypes.c_size_t)

# typedef int32_t (*duet_token_callback)(void *, size_t, const char *, size_t, int32_t);
# `piece` is declared void * so that ctypes hands over the raw pointer (we read piece_len bytes).
TOKEN_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                  ctypes.c_size_t, ctypes.c_int32)
# typedef int32_t (*duet_progress_callback)(void *, size_t done, size_t total, size_t level);
PROGRESS_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
                                     ctypes.c_size_t)


class Callbacks(ctypes.Structure):
    """duet_callbacks"""
    _fields_ = [("on_token", TOKEN_CALLBACK), ("on_progress", PROGRESS_CALLBACK), ("user_data", ctypes.c_void_p)]


_P = ctypes.c_void_p          # every opaque handle
_PP = ctypes.POINTER(ctypes.c_void_p)
_S = ctypes.c_char_p          # const char * (in)
_STATUS = ctypes.c_int32      # duet_status
_STRS = ctypes.POINTER(ctypes.c_char_p)  # const char *const *

# name: (restype, argtypes)
PROTOTYPES = {
    "duet_string_free": (None, [ctypes.c_void_p]),
    "duet_version": (ctypes.c_char_p, []),
    "duet_last_error_message": (ctypes.c_char_p, []),
    "duet_status_name": (ctypes.c_char_p, [ctypes.c_int32]),
    "duet_runtime_init": (_STATUS, [_S]),
    # generate and its result
    "duet_generate": (_STATUS, [_P, _STRS, ctypes.c_size_t, _P, TOKEN_CALLBACK, ctypes.c_void_p, _PP]),
    "duet_result_free": (None, [_P]),
    "duet_generator_new": (_STATUS, [_P, _STRS, ctypes.c_size_t, _P, _PP]),
    "duet_generator_next": (_STATUS, [_P, ctypes.c_void_p]),
    "duet_generator_cancel": (_STATUS, [_P]),
    "duet_generator_result": (_STATUS, [_P, _PP]),
    "duet_generator_free": (None, [_P]),
    "duet_result_num_inputs": (_STATUS, [_P, c_size_p]),
    "duet_result_num_sequences": (_STATUS, [_P, ctypes.c_size_t, c_size_p]),
    "duet_result_text": (_STATUS, [_P, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(ctypes.c_char_p)]),
    "duet_result_token_ids": (_STATUS, [_P, ctypes.c_size_t, ctypes.c_size_t,
                                        ctypes.POINTER(ctypes.POINTER(ctypes.c_int32)), c_size_p]),
    "duet_result_score": (_STATUS, [_P, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(ctypes.c_double)]),
    "duet_result_finish_reason": (_STATUS, [_P, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int)]),
    "duet_result_input_info": (_STATUS, [_P, ctypes.c_size_t, c_size_p, ctypes.POINTER(ctypes.c_bool)]),
    "duet_result_to_json": (_STATUS, [_P, ctypes.POINTER(ctypes.c_void_p)]),
    # models
    "duet_model_open": (_STATUS, [_S, _P, _PP]),
    "duet_model_free": (None, [_P]),
    "duet_model_info_json": (_STATUS, [_P, ctypes.POINTER(ctypes.c_void_p)]),
    "duet_model_execution_provider": (_STATUS, [_P, ctypes.POINTER(ctypes.c_char_p)]),
    "duet_model_embedding_dim": (_STATUS, [_P, c_size_p]),
    # params and options
    "duet_params_new": (_STATUS, [_PP]),
    "duet_params_free": (None, [_P]),
    "duet_params_set_int": (_STATUS, [_P, _S, ctypes.c_int64]),
    "duet_params_set_float": (_STATUS, [_P, _S, ctypes.c_double]),
    "duet_params_set_bool": (_STATUS, [_P, _S, ctypes.c_bool]),
    "duet_params_set_string": (_STATUS, [_P, _S, _S]),
    "duet_params_unset": (_STATUS, [_P, _S]),
    "duet_model_options_new": (_STATUS, [_PP]),
    "duet_model_options_free": (None, [_P]),
    "duet_model_options_set_int": (_STATUS, [_P, _S, ctypes.c_int64]),
    "duet_model_options_set_bool": (_STATUS, [_P, _S, ctypes.c_bool]),
    "duet_model_options_set_string": (_STATUS, [_P, _S, _S]),
    # embeddings, rerank, index
    "duet_embed": (_STATUS, [_P, _STRS, ctypes.c_size_t, _P, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t]),
    "duet_rerank": (_STATUS, [_P, _S, _STRS, ctypes.c_size_t, _P, ctypes.POINTER(ctypes.c_double)]),
    "duet_index_new": (_STATUS, [_P, _P, _PP]),
    "duet_index_add": (_STATUS, [_P, ctypes.c_int64, _S]),
    "duet_index_remove": (_STATUS, [_P, ctypes.c_int64]),
    "duet_index_len": (_STATUS, [_P, c_size_p]),
    "duet_index_search": (_STATUS, [_P, _S, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int64),
                                    ctypes.POINTER(ctypes.c_double), c_size_p]),
    "duet_index_save": (_STATUS, [_P, _S]),
    "duet_index_load": (_STATUS, [_P, _S, _P, _PP]),
    "duet_index_free": (None, [_P]),
    # summarize, chat, assist and replies
    "duet_summarize": (_STATUS, [_P, _S, _P, ctypes.POINTER(Callbacks), _PP]),
    "duet_translate": (_STATUS, [_P, _S, _S, _S, _P, ctypes.POINTER(Callbacks), _PP]),
    "duet_chat_new": (_STATUS, [_P, _P, _PP]),
    "duet_chat_send": (_STATUS, [_P, _S, ctypes.POINTER(Callbacks), _PP]),
    "duet_chat_reset": (_STATUS, [_P]),
    "duet_chat_num_turns": (_STATUS, [_P, c_size_p]),
    "duet_chat_free": (None, [_P]),
    "duet_assist": (_STATUS, [_P, _S, _P, ctypes.POINTER(Callbacks), _PP]),
    "duet_reply_text": (_STATUS, [_P, ctypes.POINTER(ctypes.c_char_p)]),
    "duet_reply_finish_reason": (_STATUS, [_P, ctypes.POINTER(ctypes.c_int)]),
    "duet_reply_stat": (_STATUS, [_P, _S, ctypes.POINTER(ctypes.c_int64)]),
    "duet_reply_free": (None, [_P]),
    "duet_plugin_v1": (ctypes.c_void_p, [ctypes.c_uint32, ctypes.POINTER(ctypes.c_char_p)]),
}

# Bound when the library has them (added after the first release of the ABI).
OPTIONAL_PROTOTYPES = {
    "duet_params_set_cancel_token": (_STATUS, [_P, _P]),
    "duet_cancel_token_new": (_STATUS, [_PP]),
    "duet_cancel_token_cancel": (_STATUS, [_P]),
    "duet_cancel_token_reset": (_STATUS, [_P]),
    "duet_cancel_token_free": (None, [_P]),
    # ABI 1.1: embedding models, index model identity, keyword and hybrid search
    "duet_embed_with_flags": (_STATUS, [_P, _STRS, ctypes.c_size_t, _P, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t,
                                        ctypes.POINTER(ctypes.c_bool)]),
    "duet_index_add_batch": (_STATUS, [_P, ctypes.POINTER(ctypes.c_int64), _STRS, ctypes.c_size_t]),
    "duet_index_text": (_STATUS, [_P, ctypes.c_int64, _PP]),
    "duet_index_search_with": (_STATUS, [_P, _S, ctypes.c_size_t, _P, ctypes.POINTER(ctypes.c_int64),
                                         ctypes.POINTER(ctypes.c_double), c_size_p]),
}

_lock = threading.Lock()
_lib = None
_lib_path = None

LIBRARY_NAME = "libduet.so"


def _candidates(path):
    """(where, path) pairs in lookup order."""
    if path is not None:
        yield "the explicit path", os.fspath(path)
        return
    env = os.environ.get("DUET_LIBRARY")
    if env:
        yield "$DUET_LIBRARY", env
    yield "the package folder", os.path.join(os.path.dirname(os.path.abspath(__file__)), LIBRARY_NAME)
    found = ctypes.util.find_library("duet")
    yield "the system loader", found or LIBRARY_NAME


def _open(path):
    lib = ctypes.CDLL(path)
    missing = [name for name in PROTOTYPES if not hasattr(lib, name)]
    if missing:
        raise LibraryNotFound(f"{path} is not a compatible libduet: it lacks {', '.join(missing)}")
    for name, (restype, argtypes) in list(PROTOTYPES.items()) + list(OPTIONAL_PROTOTYPES.items()):
        if not hasattr(lib, name):
            continue
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    error = ctypes.c_char_p()
    if not lib.duet_plugin_v1(ABI_MAJOR, ctypes.byref(error)):
        why = error.value.decode("utf-8", "replace") if error.value else "no reason given"
        raise LibraryNotFound(f"{path} (libduet {lib.duet_version().decode('utf-8', 'replace')}) does not offer "
                              f"ABI major {ABI_MAJOR}, which this package needs: {why}")
    return lib


def load_library(path=None):
    """Loads libduet once for the process and returns the ctypes library.

    Lookup order: ``path`` when given, else ``$DUET_LIBRARY``, else ``libduet.so`` in the
    package folder, else the system loader. A second call with another explicit path than
    the one loaded raises :class:`duet.LibraryNotFound`.
    """
    global _lib, _lib_path
    with _lock:
        if _lib is not None:
            if path is not None and os.path.realpath(os.fspath(path)) != os.path.realpath(_lib_path):
                raise LibraryNotFound(f"libduet is already loaded from {_lib_path}; cannot also load {os.fspath(path)}")
            return _lib
        tried = []
        for where, candidate in _candidates(path):
            explicit = where in ("the explicit path", "$DUET_LIBRARY")
            if where == "the package folder" and not os.path.exists(candidate):
                tried.append(f"{where} ({candidate}): no such file")
                continue
            try:
                lib = _open(candidate)
            except LibraryNotFound:
                raise
            except OSError as e:
                tried.append(f"{where} ({candidate}): {e}")
                if explicit:
                    break  # a path the user named must work; do not silently use another
                continue
            _lib, _lib_path = lib, candidate
            return lib
        raise LibraryNotFound("libduet could not be loaded; tried " + "; ".join(tried)
                              + ". Set DUET_LIBRARY or call duet.load_library(path).")


def has(name):
    """Whether the loaded library exports `name` (for the optional functions)."""
    return hasattr(lib(), name)


def lib():
    """The loaded library (loading it with the default lookup on first use)."""
    return _lib if _lib is not None else load_library()


def library_path():
    """The path libduet was loaded from, or None before it is loaded."""
    return _lib_path


def last_error():
    msg = lib().duet_last_error_message()
    return msg.decode("utf-8", "replace") if msg else ""


def check(status):
    """Raises the duet.Error subclass for a non-zero status (message read at once, on this thread)."""
    if status != 0:
        raise error_for_status(status, last_error())


def take_string(ptr):
    """Copies a duet-owned `char *` into a str and frees it."""
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode("utf-8")
    finally:
        lib().duet_string_free(ptr)


__all__ = ["load_library", "lib", "library_path", "check", "Error"]
