"""Python bindings for duet (ctypes over the C ABI of libduet.so).

    import duet
    with duet.Model("tests/fixtures/t5-tiny", max_new_tokens=20) as model:
        print(model.generate("summarize: ...").text)

libduet is found through ``duet.load_library(path)`` / ``Model(..., library=path)``, else
``$DUET_LIBRARY``, else a ``libduet.so`` inside this package folder, else the system loader.
ONNX Runtime is found by libduet itself (``$DUET_ORT_LIBRARY``, ``duet.runtime_init(path)`` or
the model option ``ort_library``). See README.md next to pyproject.toml for the whole API.
"""

import collections.abc
import ctypes
import json
import numbers
import os
import threading

from . import _lib
from ._lib import Callbacks, PROGRESS_CALLBACK, TOKEN_CALLBACK, check, library_path, load_library
from .errors import (BusyError, Cancelled, ClosedError, DeadlineExceeded, Error, IndexFileError, IndexModelMismatch, InputTooLong,
                     InternalError, InvalidArgument, InvalidHandle, InvalidParam, InvalidUtf8, IoError, LibraryNotFound,
                     ModelFileMissing, ModelInvalid, NullPointer, OnnxRuntimeError, PanicError,
                     ProviderUnavailable, RuntimeNotFound, RuntimeVersion, TokenizerError,
                     UnknownParam, Unsupported, error_for_status)

__version__ = "0.1.0"

__all__ = [
    "Model", "Chat", "ChatStream", "Index", "CancelToken", "Generation", "Sequence", "Reply", "Summary", "ChatReply",
    "load_library", "library_path", "runtime_init", "version", "status_name",
    "Error", "InvalidArgument", "NullPointer", "InvalidUtf8", "UnknownParam", "InvalidParam",
    "RuntimeNotFound", "RuntimeVersion", "ModelFileMissing", "ModelInvalid", "TokenizerError",
    "InputTooLong", "OnnxRuntimeError", "ProviderUnavailable", "IoError", "InternalError",
    "IndexFileError", "Cancelled", "DeadlineExceeded", "InvalidHandle", "Unsupported", "IndexModelMismatch",
    "PanicError", "ClosedError", "BusyError", "LibraryNotFound",
]

FINISH_REASONS = {0: "eos", 1: "length", 2: "stop_string", 3: "cancelled"}
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


# ---------------------------------------------------------------------------------------------
# module functions

def version():
    """The version of the loaded libduet, "MAJOR.MINOR.PATCH"."""
    return _lib.lib().duet_version().decode("utf-8")


def runtime_init(ort_library=None):
    """Loads ONNX Runtime now (optional: opening a model does it). ``ort_library``: a path, or
    None for libduet's own lookup ($DUET_ORT_LIBRARY, $ORT_DYLIB_PATH, ...). Later calls do
    nothing."""
    path = None if ort_library is None else _encode_path(ort_library, "ort_library")
    check(_lib.lib().duet_runtime_init(path))


def status_name(status):
    """The name of a status code, e.g. status_name(4) == "DUET_STATUS_UNKNOWN_PARAM"."""
    if not isinstance(status, numbers.Integral) or not -(1 << 31) <= int(status) < (1 << 31):
        raise TypeError("status must be an int32")
    return _lib.lib().duet_status_name(int(status)).decode("utf-8")


# ---------------------------------------------------------------------------------------------
# conversions

def _encode(value, what):
    """str/bytes -> NUL-free bytes for a `const char *`. A str that is not encodable (lone
    surrogates) is InvalidUtf8; bytes go to the library unchanged, which rejects invalid UTF-8."""
    if isinstance(value, str):
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InvalidUtf8(f"`{what}` cannot be encoded as UTF-8: {e}") from None
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        raise TypeError(f"`{what}` must be str or bytes, not {type(value).__name__}")
    if b"\0" in data:
        raise InvalidArgument(f"`{what}` contains a NUL character, which a C string cannot hold")
    return data


def _encode_path(value, what):
    try:
        value = os.fspath(value)
    except TypeError:
        raise TypeError(f"`{what}` must be a path (str, bytes or os.PathLike), not {type(value).__name__}") from None
    return _encode(value, what)


def _decode(data):
    return data.decode("utf-8") if isinstance(data, bytes) else data


def _text_list(values, what):
    """A list of encoded texts from a list/tuple/iterable of str or bytes (a lone str is refused,
    since iterating it would give characters)."""
    if isinstance(values, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"`{what}` must be a list of strings, not a single {type(values).__name__}")
    if isinstance(values, (collections.abc.Mapping, collections.abc.Set)):
        raise TypeError(f"`{what}` must be a list or tuple of strings, not a {type(values).__name__}")
    try:
        items = list(values)
    except TypeError:
        raise TypeError(f"`{what}` must be a list of str or bytes, not {type(values).__name__}") from None
    return [_encode(v, f"{what}[{i}]") for i, v in enumerate(items)]


def _c_array(encoded):
    return (ctypes.c_char_p * max(len(encoded), 1))(*encoded)


def _check_int(value, what, lo=_INT64_MIN, hi=_INT64_MAX):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{what}` must be an int, not {type(value).__name__}")
    value = int(value)
    if not lo <= value <= hi:
        raise OverflowError(f"`{what}` = {value} is out of range [{lo}, {hi}]")
    return value


def _apply_settings(handle, settings, setters, what):
    """Sets every key of `settings` on a duet_params / duet_model_options object."""
    set_int, set_float, set_bool, set_string, unset = setters
    if not isinstance(settings, dict):
        raise TypeError(f"{what} must be a dict, not {type(settings).__name__}")
    for key, value in settings.items():
        if not isinstance(key, str):
            raise TypeError(f"{what} keys must be str, not {type(key).__name__}")
        k = _encode(key, "key")
        if value is None:
            if unset is not None:
                check(unset(handle, k))
            continue
        if isinstance(value, bool):
            status = set_bool(handle, k, value)
        elif isinstance(value, numbers.Integral):
            v = int(value)
            if not _INT64_MIN <= v <= _INT64_MAX:
                raise InvalidParam(f"`{key}` = {v} does not fit in 64 bits")
            status = set_int(handle, k, v)
        elif isinstance(value, numbers.Real):
            status = set_float(handle, k, float(value))
        elif isinstance(value, (str, bytes, bytearray, memoryview)):
            status = set_string(handle, k, _encode(value, key))
        elif isinstance(value, (list, tuple)):
            try:
                text = json.dumps(list(value))
            except (TypeError, ValueError) as e:
                raise TypeError(f"`{key}`: the list cannot be written as JSON: {e}") from None
            status = set_string(handle, k, text.encode("utf-8"))
        else:
            raise TypeError(f"`{key}` must be bool, int, float, str or a list, not {type(value).__name__}")
        check(status)


class _Params:
    """A duet_params built from a dict, freed on exit."""

    def __init__(self, settings):
        L = _lib.lib()
        out = ctypes.c_void_p()
        check(L.duet_params_new(ctypes.byref(out)))
        self.ptr = out.value
        try:
            settings = dict(settings)
            if "cancel_token" in settings:
                _set_cancel_token(self.ptr, settings.pop("cancel_token"))
            _apply_settings(self.ptr, settings,
                            (L.duet_params_set_int, L.duet_params_set_float, L.duet_params_set_bool,
                             L.duet_params_set_string, L.duet_params_unset), "params")
        except BaseException:
            self.free()
            raise

    def free(self):
        if self.ptr:
            ptr, self.ptr = self.ptr, None
            _lib.lib().duet_params_free(ptr)

    def __enter__(self):
        return self.ptr

    def __exit__(self, *exc):
        self.free()


def _set_cancel_token(params, token):
    L = _lib.lib()
    if not hasattr(L, "duet_params_set_cancel_token"):
        raise NotImplementedError(f"this libduet ({_lib.library_path()}) has no cancel tokens")
    if token is None:
        check(L.duet_params_set_cancel_token(params, None))
        return
    if not isinstance(token, CancelToken):
        raise TypeError(f"`cancel_token` must be a duet.CancelToken, not {type(token).__name__}")
    with token._use() as ptr:
        check(L.duet_params_set_cancel_token(params, ptr))  # the params keep the token alive


def _options(settings):
    L = _lib.lib()
    out = ctypes.c_void_p()
    check(L.duet_model_options_new(ctypes.byref(out)))
    try:
        _apply_settings(out.value, settings,
                        (L.duet_model_options_set_int, _no_float, L.duet_model_options_set_bool, L.duet_model_options_set_string, None), "options")
    except BaseException:
        L.duet_model_options_free(out.value)
        raise
    return out.value


def _no_float(handle, key, value):
    raise TypeError(f"model option `{key.decode()}` cannot be a float (no option takes one)")


# ---------------------------------------------------------------------------------------------
# callbacks

class _Hooks:
    """Python callables behind C callbacks. An exception raised by a callable is caught (it must
    not cross C), cancels the call (non-zero return) and is re-raised by `finish`."""

    def __init__(self, on_token=None, on_progress=None, token_arity=3):
        if on_token is not None and not callable(on_token):
            raise TypeError(f"stream must be callable, not {type(on_token).__name__}")
        if on_progress is not None and not callable(on_progress):
            raise TypeError(f"progress must be callable, not {type(on_progress).__name__}")
        self.error = None
        self._token_fn, self._progress_fn, self._arity = on_token, on_progress, token_arity
        # the CFUNCTYPE objects must stay alive while C may call them: they live on self
        self.c_token = TOKEN_CALLBACK(self._on_token) if on_token is not None else TOKEN_CALLBACK()
        self.c_progress = PROGRESS_CALLBACK(self._on_progress) if on_progress is not None else PROGRESS_CALLBACK()
        self.struct = Callbacks(self.c_token, self.c_progress, None)

    def _on_token(self, _user_data, input_index, piece, piece_len, token_id):
        if self.error is not None:
            return 1
        try:
            text = ctypes.string_at(piece, piece_len).decode("utf-8") if piece_len else ""
            if self._arity == 1:
                verdict = self._token_fn(text)
            else:
                verdict = self._token_fn(text, input_index, token_id)
            return 1 if verdict is True else 0
        except BaseException as e:  # noqa: BLE001 - nothing may unwind into C
            self.error = e
            return 1

    def _on_progress(self, _user_data, done, total, level):
        if self.error is not None:
            return 1
        try:
            return 1 if self._progress_fn(done, total, level) is True else 0
        except BaseException as e:  # noqa: BLE001
            self.error = e
            return 1

    def finish(self, status):
        """After the C call: the callback's exception first, else the status."""
        if self.error is not None:  # the callback's exception is what the caller must see
            err, self.error = self.error, None
            raise err
        check(status)


# ---------------------------------------------------------------------------------------------
# handles

class _Closing:
    """``with`` and garbage collection both end in ``close()``."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class _Handle(_Closing):
    """An owned C pointer. close() is idempotent; a close() while a call is using the handle
    (from another thread or from a callback) frees it when that call returns."""

    _free_fn = None

    def __init__(self):
        self._ptr = None
        self._state = threading.Lock()
        self._active = 0
        self._closed = False

    def _use(self):
        return _Use(self)

    def _acquire(self):
        with self._state:
            if self._closed or not self._ptr:
                raise ClosedError(f"this {type(self).__name__} is closed")
            self._active += 1
            return self._ptr

    def _release(self):
        with self._state:
            self._active -= 1
            ptr = None
            if self._closed and self._active == 0 and self._ptr:
                ptr, self._ptr = self._ptr, None
        if ptr:
            getattr(_lib.lib(), self._free_fn)(ptr)

    @property
    def closed(self):
        return self._closed or not self._ptr

    def close(self):
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

    def __enter__(self):
        if self.closed:
            raise ClosedError(f"this {type(self).__name__} is closed")
        return self


class _Use:
    __slots__ = ("handle",)

    def __init__(self, handle):
        self.handle = handle

    def __enter__(self):
        return self.handle._acquire()

    def __exit__(self, *exc):
        self.handle._release()


# ---------------------------------------------------------------------------------------------
# results

class Sequence:
    """One generated sequence: text, token_ids, score, finish_reason ("eos", "length",
    "stop_string" or "cancelled")."""

    __slots__ = ("text", "token_ids", "score", "finish_reason")

    def __init__(self, text, token_ids, score, finish_reason):
        self.text, self.token_ids, self.score, self.finish_reason = text, token_ids, score, finish_reason

    def as_dict(self):
        return {"token_ids": list(self.token_ids), "text": self.text, "score": self.score,
                "finish_reason": self.finish_reason}

    def __eq__(self, other):
        return isinstance(other, Sequence) and self.as_dict() == other.as_dict()

    def __repr__(self):
        return f"Sequence(text={self.text!r}, score={self.score:.4f}, finish_reason={self.finish_reason!r})"


class Generation:
    """What one input produced. ``sequences``: num_return_sequences Sequence objects, best first;
    ``text``, ``token_ids``, ``score`` and ``finish_reason`` are the best sequence's.
    ``input_tokens`` / ``input_truncated``: the encoded input. ``as_dict()`` has the layout of
    one entry of the CLI's ``--json`` "results"."""

    __slots__ = ("input", "sequences", "input_tokens", "input_truncated")

    def __init__(self, input, sequences, input_tokens, input_truncated):
        self.input, self.sequences = input, sequences
        self.input_tokens, self.input_truncated = input_tokens, input_truncated

    text = property(lambda self: self.sequences[0].text)
    token_ids = property(lambda self: self.sequences[0].token_ids)
    score = property(lambda self: self.sequences[0].score)
    finish_reason = property(lambda self: self.sequences[0].finish_reason)

    def as_dict(self):
        return {"input": self.input, "input_tokens": self.input_tokens, "input_truncated": self.input_truncated,
                "sequences": [s.as_dict() for s in self.sequences], "finish_reason": self.finish_reason}

    def __str__(self):
        return self.text

    def __repr__(self):
        return f"Generation(text={self.text!r}, finish_reason={self.finish_reason!r}, sequences={len(self.sequences)})"


class Reply:
    """The answer of summarize, chat or assist: ``text``, ``finish_reason`` and ``stats`` (a dict
    of the numbers duet_reply_stat gives)."""

    _STATS = ()
    __slots__ = ("text", "finish_reason", "stats")

    def __init__(self, text, finish_reason, stats):
        self.text, self.finish_reason, self.stats = text, finish_reason, stats

    def __str__(self):
        return self.text

    def __repr__(self):
        return f"{type(self).__name__}(text={self.text!r}, finish_reason={self.finish_reason!r}, stats={self.stats})"

    @classmethod
    def _read(cls, ptr):
        L = _lib.lib()
        text = ctypes.c_char_p()
        check(L.duet_reply_text(ptr, ctypes.byref(text)))
        reason = ctypes.c_int()
        check(L.duet_reply_finish_reason(ptr, ctypes.byref(reason)))
        stats = {}
        for key in cls._STATS:
            v = ctypes.c_int64()
            check(L.duet_reply_stat(ptr, key.encode(), ctypes.byref(v)))
            stats[key] = v.value
        return cls(_decode(text.value or b""), FINISH_REASONS.get(reason.value, str(reason.value)), stats)

    @classmethod
    def _take(cls, ptr):
        try:
            return cls._read(ptr)
        finally:
            _lib.lib().duet_reply_free(ptr)


class Summary(Reply):
    """summarize()'s reply; ``chunks``, ``levels`` (map-reduce depth) and ``summaries``."""

    _STATS = ("chunks", "levels", "summaries")
    __slots__ = ()
    chunks = property(lambda self: self.stats["chunks"])
    levels = property(lambda self: self.stats["levels"])
    summaries = property(lambda self: self.stats["summaries"])


class ChatReply(Reply):
    """A chat/assist reply; ``dropped_turns``, ``prompt_tokens`` and ``input_truncated``."""

    _STATS = ("dropped_turns", "prompt_tokens", "input_truncated")
    __slots__ = ()
    dropped_turns = property(lambda self: self.stats["dropped_turns"])
    prompt_tokens = property(lambda self: self.stats["prompt_tokens"])
    input_truncated = property(lambda self: bool(self.stats["input_truncated"]))


def _read_result(ptr, inputs):
    L = _lib.lib()
    n = ctypes.c_size_t()
    check(L.duet_result_num_inputs(ptr, ctypes.byref(n)))
    out = []
    for i in range(n.value):
        n_seq = ctypes.c_size_t()
        check(L.duet_result_num_sequences(ptr, i, ctypes.byref(n_seq)))
        tokens, truncated = ctypes.c_size_t(), ctypes.c_bool()
        check(L.duet_result_input_info(ptr, i, ctypes.byref(tokens), ctypes.byref(truncated)))
        seqs = []
        for s in range(n_seq.value):
            text = ctypes.c_char_p()
            check(L.duet_result_text(ptr, i, s, ctypes.byref(text)))
            ids, n_ids = ctypes.POINTER(ctypes.c_int32)(), ctypes.c_size_t()
            check(L.duet_result_token_ids(ptr, i, s, ctypes.byref(ids), ctypes.byref(n_ids)))
            score = ctypes.c_double()
            check(L.duet_result_score(ptr, i, s, ctypes.byref(score)))
            reason = ctypes.c_int()
            check(L.duet_result_finish_reason(ptr, i, s, ctypes.byref(reason)))
            seqs.append(Sequence(_decode(text.value or b""), [ids[j] for j in range(n_ids.value)], score.value,
                                 FINISH_REASONS.get(reason.value, str(reason.value))))
        out.append(Generation(inputs[i] if i < len(inputs) else None, seqs, tokens.value, bool(truncated.value)))
    return out


_NUMPY = []


def _numpy():
    if not _NUMPY:
        try:
            import numpy  # noqa: PLC0415 - optional
        except ImportError:
            numpy = None
        _NUMPY.append(numpy)
    return _NUMPY[0]


# ---------------------------------------------------------------------------------------------
# Model

class Model(_Handle):
    """An opened model directory (Hugging Face Optimum ONNX export).

    ``Model(path, options=None, library=None, **params)``: ``options`` are model options
    (``layout``, ``providers``, ``strict_providers``, ``intra_threads``, ``ort_library``, ...);
    ``params`` are default parameters for every call (generation keys such as
    ``max_new_tokens=20, num_beams=4`` and task keys such as ``summary_length="short"``),
    merged with each call's own keyword arguments (a value of None returns a key to its
    default). Thread-safe: one Model may serve many threads at once.
    """

    _free_fn = "duet_model_free"

    def __init__(self, path, options=None, library=None, **params):
        super().__init__()
        L = load_library(library) if library is not None else _lib.lib()
        self.path = os.fspath(path) if isinstance(path, (str, bytes, os.PathLike)) else path
        encoded = _encode_path(path, "path")
        self._defaults = dict(params)
        _Params(self._defaults).free()  # refuse bad defaults now rather than at the first call
        opts = _options(options) if options is not None else None
        out = ctypes.c_void_p()
        try:
            check(L.duet_model_open(encoded, opts, ctypes.byref(out)))
        finally:
            if opts:
                L.duet_model_options_free(opts)
        self._ptr = out.value
        self._dim = None

    def __repr__(self):
        return f"duet.Model({self.path!r}{', closed' if self.closed else ''})"

    @property
    def params(self):
        """The default params given to the constructor (a copy)."""
        return dict(self._defaults)

    def _merged(self, params):
        merged = dict(self._defaults)
        merged.update(params)
        return merged

    @property
    def info(self):
        """What was detected: architecture, layout, vocab_size, execution_provider, ... (a dict)."""
        out = ctypes.c_void_p()
        with self._use() as ptr:
            check(_lib.lib().duet_model_info_json(ptr, ctypes.byref(out)))
        return json.loads(_lib.take_string(out.value))

    @property
    def execution_provider(self):
        out = ctypes.c_char_p()
        with self._use() as ptr:
            check(_lib.lib().duet_model_execution_provider(ptr, ctypes.byref(out)))
        return out.value.decode("utf-8")

    @property
    def embedding_dim(self):
        if self._dim is None:
            out = ctypes.c_size_t()
            with self._use() as ptr:
                check(_lib.lib().duet_model_embedding_dim(ptr, ctypes.byref(out)))
            self._dim = out.value
        return self._dim

    def generate(self, inputs, stream=None, **params):
        """Generates for one text (returns a Generation) or a list of texts decoded as one batch
        (returns a list of Generation). ``stream(piece, input_index, token_id)`` hears the text
        as it is decided (greedy/sampling: piece by piece; beam search: each input's best
        sequence once); returning True cancels (finish_reason "cancelled")."""
        single = isinstance(inputs, (str, bytes, bytearray, memoryview))
        encoded = [_encode(inputs, "inputs")] if single else _text_list(inputs, "inputs")
        hooks = _Hooks(on_token=stream, token_arity=3) if stream is not None else None
        array = _c_array(encoded)
        out = ctypes.c_void_p()
        with self._use() as ptr, _Params(self._merged(params)) as p:
            status = _lib.lib().duet_generate(ptr, array, len(encoded), p, hooks.c_token if hooks else TOKEN_CALLBACK(), None,
                                              ctypes.byref(out))
        try:
            (hooks.finish(status) if hooks else check(status))
            result = _read_result(out.value, [e.decode("utf-8") for e in encoded])
        finally:
            _lib.lib().duet_result_free(out.value)
        return result[0] if single else result

    def summarize(self, text, progress=None, stream=None, **params):
        """Summarizes a text of any length (map-reduce over chunks when it is longer than the
        input limit). ``progress(done, total, level)`` is called after every batch of chunks and
        at every decoding step; returning True cancels (finish_reason "cancelled").
        ``stream(piece)`` hears the final summary. Returns a Summary."""
        hooks = _Hooks(on_token=stream, on_progress=progress, token_arity=1)
        return self._reply_call(_lib.lib().duet_summarize, _encode(text, "text"), hooks, params, Summary)

    def assist(self, question, stream=None, **params):
        """One question, no history (a chat of one turn). ``stream(piece)``; returning True
        cancels. Returns a ChatReply."""
        hooks = _Hooks(on_token=stream, token_arity=1)
        return self._reply_call(_lib.lib().duet_assist, _encode(question, "question"), hooks, params, ChatReply)

    def _reply_call(self, function, data, hooks, params, reply_class):
        """Calls duet_summarize / duet_assist and wraps the duet_reply they return."""
        out = ctypes.c_void_p()
        with self._use() as ptr, _Params(self._merged(params)) as p:
            status = function(ptr, data, p, ctypes.byref(hooks.struct), ctypes.byref(out))
        try:
            hooks.finish(status)
        except BaseException:
            _lib.lib().duet_reply_free(out.value)
            raise
        return reply_class._take(out.value)

    def chat(self, **params):
        """A new Chat on this model (same as ``duet.Chat(model, **params)``)."""
        return Chat(self, **params)

    def embed(self, texts, as_numpy=None, return_truncated=False, **params):
        """Embeddings, pooled and normalised as the model says (an embedding model's
        sentence-transformers files; mean pooling and L2 for a seq2seq encoder). One str gives one
        vector, a list gives one row per text. ``as_numpy``: None (default) returns numpy float32
        arrays when numpy can be imported and lists of floats otherwise; True requires numpy;
        False always gives lists. ``input_kind="query"`` uses the model's query prefix.
        ``return_truncated=True`` returns ``(vectors, truncated)``, ``truncated`` a list of bools
        (texts cut to the limit; only with ``truncate_input=True``, else a long text raises
        InputTooLong)."""
        single = isinstance(texts, (str, bytes, bytearray, memoryview))
        encoded = [_encode(texts, "texts")] if single else _text_list(texts, "texts")
        np = _numpy() if as_numpy is None or as_numpy else None
        if as_numpy and np is None:
            raise ImportError("as_numpy=True needs numpy")
        dim, n = self.embedding_dim, len(encoded)
        if np is not None:
            buf = np.zeros((n, dim), dtype=np.float32)
            ptr_out = buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        else:
            buf = (ctypes.c_float * max(n * dim, 1))()
            ptr_out = buf
        flags = (ctypes.c_bool * max(n, 1))()
        with self._use() as ptr, _Params(self._merged(params)) as p:
            check(_lib.lib().duet_embed_with_flags(ptr, _c_array(encoded), n, p, ptr_out, n * dim, flags))
        if np is not None:
            vectors = buf[0] if single else buf
        else:
            rows = [list(buf[i * dim:(i + 1) * dim]) for i in range(n)]
            vectors = rows[0] if single else rows
        if return_truncated:
            truncated = [bool(flags[i]) for i in range(n)]
            return vectors, (truncated[0] if single else truncated)
        return vectors

    def rerank(self, query, passages, **params):
        """Scores each passage against ``query`` (higher is more relevant); a list of floats.
        Params: ``rerank_mode`` ("likelihood" or "relevance"), ``rerank_template``,
        ``relevance_tokens``."""
        q = _encode(query, "query")
        encoded = _text_list(passages, "passages")
        scores = (ctypes.c_double * max(len(encoded), 1))()
        with self._use() as ptr, _Params(self._merged(params)) as p:
            check(_lib.lib().duet_rerank(ptr, q, _c_array(encoded), len(encoded), p, scores))
        return [scores[i] for i in range(len(encoded))]


# ---------------------------------------------------------------------------------------------
# Chat

class Chat(_Handle):
    """A conversation: ``Chat(model, **params)`` (the model's default params merged with these;
    chat keys: ``system_prompt``, ``chat_template``, ``chat_turn_template``, generation keys).

    ``send(text, stream=None)`` answers and returns a ChatReply; ``stream(text)`` returns a
    ChatStream, an iterator of text pieces whose ``reply`` is set once it is exhausted.
    ``reset()`` forgets the turns; ``len(chat)`` is the number of turns kept. A Chat serves one
    call at a time: a new send()/stream() first cancels a stream still running, and a call from
    inside one of its own callbacks raises BusyError."""

    _free_fn = "duet_chat_free"

    def __init__(self, model, **params):
        super().__init__()
        if not isinstance(model, Model):
            raise TypeError(f"model must be a duet.Model, not {type(model).__name__}")
        self.model = model
        self._call = threading.Lock()
        self._owner = None
        self._stream = None  # the _StreamState of a running stream
        self.last_reply = None
        out = ctypes.c_void_p()
        with model._use() as mp, _Params(model._merged(params)) as p:
            check(_lib.lib().duet_chat_new(mp, p, ctypes.byref(out)))
        self._ptr = out.value

    def _begin(self, owner):
        if self._owner is not None and self._owner == threading.get_ident():
            raise BusyError("this Chat is busy: it was called from inside one of its own callbacks")
        running = self._stream
        if running is not None:
            running.cancel_and_wait()
        self._call.acquire()
        self._owner = owner

    def _end(self):
        self._owner = None
        self._call.release()

    def send(self, text, stream=None):
        """Sends a user message; returns the ChatReply. ``stream(piece)`` hears the answer as it
        is decided; returning True cancels (a cancelled turn is not kept)."""
        data = _encode(text, "text")
        hooks = _Hooks(on_token=stream, token_arity=1)
        self._begin(threading.get_ident())
        try:
            out = ctypes.c_void_p()
            with self._use() as ptr:
                status = _lib.lib().duet_chat_send(ptr, data, ctypes.byref(hooks.struct), ctypes.byref(out))
            try:
                hooks.finish(status)
            except BaseException:
                _lib.lib().duet_reply_free(out.value)
                raise
            reply = ChatReply._take(out.value)
        finally:
            self._end()
        self.last_reply = reply
        return reply

    def stream(self, text):
        """Sends a user message and returns a ChatStream: iterate it for the answer's pieces;
        its ``reply`` (and this chat's ``last_reply``) is the ChatReply once it is exhausted.
        Closing it (or dropping it) before the end cancels the turn."""
        data = _encode(text, "text")
        self._acquire()  # fails now, not in the worker, when closed
        self._release()
        return ChatStream(self, data)

    def reset(self):
        """Forgets every turn."""
        self._begin(threading.get_ident())
        try:
            with self._use() as ptr:
                check(_lib.lib().duet_chat_reset(ptr))
        finally:
            self._end()

    def __len__(self):
        out = ctypes.c_size_t()
        with self._use() as ptr:
            check(_lib.lib().duet_chat_num_turns(ptr, ctypes.byref(out)))
        return out.value

    @property
    def turns(self):
        return len(self)

    def close(self):
        running = getattr(self, "_stream", None)
        if running is not None:
            running.cancel_and_wait()
        super().close()


_END = object()


class _StreamState:
    """What the worker thread of a ChatStream shares with it (the worker never holds the
    ChatStream itself, so dropping the ChatStream cancels).

    Pieces pass through a bounded buffer: the worker (inside duet_chat_send's callback) waits
    while `AHEAD` pieces are unread, so an abandoned stream is cancelled at most `AHEAD` pieces
    after the last one read, instead of running to its end."""

    AHEAD = 4

    def __init__(self, chat, data):
        self.chat = chat
        self.items = collections.deque()
        self.cond = threading.Condition()
        self.done = False
        self.cancelled = False
        self.reply = None
        self.error = None
        self.c_token = TOKEN_CALLBACK(self._on_token)
        self.struct = Callbacks(self.c_token, PROGRESS_CALLBACK(), None)
        self.thread = threading.Thread(target=self._run, args=(data,), name="duet-chat-stream", daemon=True)

    def _on_token(self, _user_data, _input_index, piece, piece_len, _token_id):
        try:
            text = ctypes.string_at(piece, piece_len).decode("utf-8") if piece_len else ""
            with self.cond:
                while len(self.items) >= self.AHEAD and not self.cancelled:
                    self.cond.wait()
                if self.cancelled:
                    return 1
                self.items.append(text)
                self.cond.notify_all()
            return 0
        except BaseException as e:  # noqa: BLE001 - nothing may unwind into C
            self.error = e
            return 1

    def _run(self, data):
        chat = self.chat
        try:
            out = ctypes.c_void_p()
            with chat._use() as ptr:
                status = _lib.lib().duet_chat_send(ptr, data, ctypes.byref(self.struct), ctypes.byref(out))
            if status != 0:
                self.error = self.error or error_for_status(status, _lib.last_error())
                _lib.lib().duet_reply_free(out.value)
            else:
                self.reply = ChatReply._take(out.value)
                if self.error is None:
                    chat.last_reply = self.reply
        except BaseException as e:  # noqa: BLE001
            self.error = self.error or e
        finally:
            chat._stream = None
            chat._end()
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def get(self):
        """The next piece, or _END when the answer is over or cancelled."""
        with self.cond:
            while not self.items and not self.done and not self.cancelled:
                self.cond.wait()
            if self.cancelled:
                return _END
            if self.items:
                item = self.items.popleft()
                self.cond.notify_all()
                return item
            return _END

    def cancel_and_wait(self):
        with self.cond:
            self.cancelled = True
            self.cond.notify_all()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join()


class ChatStream(_Closing):
    """An iterator of the pieces of one chat answer (from ``Chat.stream``). After the last
    piece ``reply`` holds the ChatReply. ``close()`` (also on ``with`` exit, when the object is
    dropped, and when the chat starts another call) cancels an unfinished answer, waits for it
    to stop and ends the iteration; a cancelled turn is not kept. The answer is decoded on a
    worker thread at most a few pieces ahead of the reader."""

    def __init__(self, chat, data):
        self._state = _StreamState(chat, data)
        self._finished = False
        chat._begin(self._state.thread)  # the worker holds the chat until it is done
        chat._stream = self._state
        try:
            self._state.thread.start()
        except BaseException:
            chat._stream = None
            chat._end()
            raise

    @property
    def reply(self):
        """The ChatReply, once the stream is exhausted (None before)."""
        return self._state.reply if self._finished else None

    @property
    def text(self):
        return self.reply.text if self.reply is not None else None

    def __iter__(self):
        return self

    def __next__(self):
        if self._finished:
            raise StopIteration
        item = self._state.get()
        if item is _END:
            if self._state.cancelled:  # by close() or by a newer call on the chat
                self.close()
                raise StopIteration
            self._finished = True
            self._state.thread.join()
            if self._state.error is not None:
                err, self._state.error = self._state.error, None
                raise err
            raise StopIteration
        return item

    def close(self):
        """Cancels the answer if it is still running and waits for the worker."""
        state = getattr(self, "_state", None)
        if state is None or self._finished:
            return
        state.cancel_and_wait()
        self._finished = True
        state.error = None



# ---------------------------------------------------------------------------------------------
# CancelToken

class CancelToken(_Handle):
    """A flag that cancels, from any thread, every call given it as ``cancel_token=token``
    (such a call raises duet.Cancelled at its next decoding step). ``cancel()``, ``reset()``,
    ``close()``. Needs a libduet with cancel tokens (NotImplementedError otherwise).
    A timeout needs no token: pass ``timeout_ms=...`` (duet.DeadlineExceeded)."""

    _free_fn = "duet_cancel_token_free"

    def __init__(self):
        super().__init__()
        L = _lib.lib()
        if not hasattr(L, "duet_cancel_token_new"):
            raise NotImplementedError(f"this libduet ({_lib.library_path()}) has no cancel tokens")
        out = ctypes.c_void_p()
        check(L.duet_cancel_token_new(ctypes.byref(out)))
        self._ptr = out.value

    def cancel(self):
        """Cancels every call watching this token. Thread-safe."""
        with self._use() as ptr:
            check(_lib.lib().duet_cancel_token_cancel(ptr))

    def reset(self):
        """Makes the token usable again."""
        with self._use() as ptr:
            check(_lib.lib().duet_cancel_token_reset(ptr))


# ---------------------------------------------------------------------------------------------
# Index

class Index(_Handle):
    """An in-memory search index of (id, text) embedded with a model: ``Index(model, **params)``
    (params are used for embedding, searching and reranking). ``add(id, text)``,
    ``add_many(ids, texts)``, ``remove(id)``, ``text(id)``,
    ``search(query, k=5, rerank_top_n=0, mode=None)`` -> [(id, score), ...] best first,
    ``save(path)``, ``Index.load(model, path)`` (IndexModelMismatch when another model made it),
    ``len(index)``. Thread-safe."""

    _free_fn = "duet_index_free"

    def __init__(self, model, **params):
        super().__init__()
        if not isinstance(model, Model):
            raise TypeError(f"model must be a duet.Model, not {type(model).__name__}")
        self.model = model
        out = ctypes.c_void_p()
        with model._use() as mp, _Params(model._merged(params)) as p:
            check(_lib.lib().duet_index_new(mp, p, ctypes.byref(out)))
        self._ptr = out.value

    @classmethod
    def load(cls, model, path, **params):
        """Reads an index written by save(); IndexFileError when damaged or of another model width."""
        if not isinstance(model, Model):
            raise TypeError(f"model must be a duet.Model, not {type(model).__name__}")
        encoded = _encode_path(path, "path")
        self = cls.__new__(cls)
        _Handle.__init__(self)
        self.model = model
        out = ctypes.c_void_p()
        with model._use() as mp, _Params(model._merged(params)) as p:
            check(_lib.lib().duet_index_load(mp, encoded, p, ctypes.byref(out)))
        self._ptr = out.value
        return self

    def add(self, id, text):
        """Adds ``text`` under the int64 ``id``; an id already present is InvalidArgument."""
        id = _check_int(id, "id")
        data = _encode(text, "text")
        with self._use() as ptr:
            check(_lib.lib().duet_index_add(ptr, id, data))

    def remove(self, id):
        """Removes ``id``; an absent id is InvalidArgument."""
        id = _check_int(id, "id")
        with self._use() as ptr:
            check(_lib.lib().duet_index_remove(ptr, id))

    def __len__(self):
        out = ctypes.c_size_t()
        with self._use() as ptr:
            check(_lib.lib().duet_index_len(ptr, ctypes.byref(out)))
        return out.value

    def add_many(self, ids, texts):
        """Adds ``texts`` under ``ids`` (int64s of your choosing), embedded in batches: all of
        them or, when any fails, none."""
        encoded = _text_list(texts, "texts")
        ids = [_check_int(i, "id") for i in ids]
        if len(ids) != len(encoded):
            raise InvalidArgument(f"{len(ids)} ids for {len(encoded)} texts")
        c_ids = (ctypes.c_int64 * max(len(ids), 1))(*ids)
        with self._use() as ptr:
            check(_lib.lib().duet_index_add_batch(ptr, c_ids, _c_array(encoded), len(encoded)))

    def text(self, id):
        """The stored text of ``id``; InvalidArgument when absent."""
        id = _check_int(id, "id")
        out = ctypes.c_void_p()
        with self._use() as ptr:
            check(_lib.lib().duet_index_text(ptr, id, ctypes.byref(out)))
        return _lib.take_string(out.value)

    def search(self, query, k=5, rerank_top_n=0, mode=None, **params):
        """The ``k`` best entries as (id, score) pairs, best first (fewer when the index is
        smaller). ``mode``: "vector" (cosine similarity, the default), "keyword" (BM25 over the
        stored texts) or "hybrid" (reciprocal rank fusion of both; ``rrf_k``,
        ``hybrid_candidates``). With ``rerank_top_n`` > 0 the best that many are rescored by the
        decoder and come first with rerank scores; the rest keep their first-stage scores."""
        data = _encode(query, "query")
        k = _check_int(k, "k", 0, (1 << 63) - 1)
        rerank_top_n = _check_int(rerank_top_n, "rerank_top_n", 0, (1 << 63) - 1)
        call = dict(params)
        if mode is not None:
            call["search_mode"] = mode
        if rerank_top_n:
            call["rerank_top_n"] = rerank_top_n
        with self._use() as ptr, _Params(call) as p:
            L = _lib.lib()
            size = ctypes.c_size_t()
            check(L.duet_index_len(ptr, ctypes.byref(size)))
            # never allocate more than the index holds; duet writes at most the k it is given
            room = max(min(k, size.value), 1)
            ids = (ctypes.c_int64 * room)()
            scores = (ctypes.c_double * room)()
            found = ctypes.c_size_t()
            check(L.duet_index_search_with(ptr, data, min(k, room), p, ids, scores, ctypes.byref(found)))
        n = min(found.value, room)
        return [(ids[i], scores[i]) for i in range(n)]

    def save(self, path):
        """Writes the index to one file (format version and checksum included)."""
        encoded = _encode_path(path, "path")
        with self._use() as ptr:
            check(_lib.lib().duet_index_save(ptr, encoded))
