"""Model: an opened model directory and every call made on it directly (generate, summarize,
assist, embed, rerank)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Type, TypeVar, Union, overload

from . import _lib
from ._convert import PathArg, Text, _c_array, _encode, _encode_path, _options, _Params, _text_list
from ._handle import _Handle
from ._hooks import ProgressCallback, TokenCallback, _Hooks
from ._lib import TOKEN_CALLBACK, check, load_library
from .results import ChatReply, Generation, Reply, Summary, Translation, _read_result

if TYPE_CHECKING:
    from .chat import Chat
    from .generator import Generator

_R = TypeVar("_R", bound=Reply)

_NUMPY: List[Any] = []


def _numpy() -> Any:
    if not _NUMPY:
        try:
            import numpy  # noqa: PLC0415 - optional
        except ImportError:
            numpy = None
        _NUMPY.append(numpy)
    return _NUMPY[0]


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

    def __init__(self, path: PathArg, options: Optional[Dict[str, Any]] = None, library: Optional[PathArg] = None,
                 **params: Any) -> None:
        super().__init__()
        L = load_library(library) if library is not None else _lib.lib()
        self.path: Union[str, bytes] = os.fspath(path) if isinstance(path, (str, bytes, os.PathLike)) else path
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
        self._dim: Optional[int] = None

    def __repr__(self) -> str:
        return f"duet.Model({self.path!r}{', closed' if self.closed else ''})"

    @property
    def params(self) -> Dict[str, Any]:
        """The default params given to the constructor (a copy)."""
        return dict(self._defaults)

    def _merged(self, params: Dict[str, Any]) -> Dict[str, Any]:
        merged = dict(self._defaults)
        merged.update(params)
        return merged

    @property
    def info(self) -> Dict[str, Any]:
        """What was detected: architecture, layout, vocab_size, execution_provider, ... (a dict)."""
        out = ctypes.c_void_p()
        with self._use() as ptr:
            check(_lib.lib().duet_model_info_json(ptr, ctypes.byref(out)))
        info: Dict[str, Any] = json.loads(_lib.take_string(out.value))
        return info

    @property
    def execution_provider(self) -> str:
        out = ctypes.c_char_p()
        with self._use() as ptr:
            check(_lib.lib().duet_model_execution_provider(ptr, ctypes.byref(out)))
        return out.value.decode("utf-8")  # type: ignore[union-attr]  # set by a successful call

    @property
    def embedding_dim(self) -> int:
        if self._dim is None:
            out = ctypes.c_size_t()
            with self._use() as ptr:
                check(_lib.lib().duet_model_embedding_dim(ptr, ctypes.byref(out)))
            self._dim = out.value
        return self._dim

    @overload
    def generate(self, inputs: Text, stream: Optional[TokenCallback] = ..., **params: Any) -> Generation: ...

    @overload
    def generate(self, inputs: Iterable[Text], stream: Optional[TokenCallback] = ...,
                 **params: Any) -> List[Generation]: ...

    def generate(self, inputs: Union[Text, Iterable[Text]], stream: Optional[TokenCallback] = None,
                 **params: Any) -> Union[Generation, List[Generation]]:
        """Generates for one text (returns a Generation) or a list of texts decoded as one batch
        (returns a list of Generation). ``stream(piece, input_index, token_id)`` hears the text
        as it is decided (greedy/sampling: piece by piece; beam search: each input's best
        sequence once); returning True cancels (finish_reason "cancelled")."""
        single = isinstance(inputs, (str, bytes, bytearray, memoryview))
        encoded = [_encode(inputs, "inputs")] if single else _text_list(inputs, "inputs")
        hooks = _Hooks(on_token=stream, token_arity=3) if stream is not None else None
        array = _c_array(encoded)
        out = ctypes.c_void_p()
        with self._use() as ptr, _Params(self._merged(params)) as p, (hooks or contextlib.nullcontext()):
            status = _lib.lib().duet_generate(ptr, array, len(encoded), p, hooks.c_token if hooks else TOKEN_CALLBACK(), None,
                                              ctypes.byref(out))
        try:
            if hooks:
                hooks.finish(status)
            else:
                check(status)
            result = _read_result(out.value, [e.decode("utf-8") for e in encoded])
        finally:
            _lib.lib().duet_result_free(out.value)
        return result[0] if single else result

    def generator(self, inputs: Union[Text, Iterable[Text]], **params: Any) -> "Generator":
        """A generation to drive by hand: iterate over it for Events ("text" pieces and
        "finished" inputs), stop early with ``cancel()`` or by closing it; ``result`` then holds
        the Generation (or the list of them). See duet.Generator."""
        from .generator import Generator  # noqa: PLC0415 - generator imports results, as we do

        single = isinstance(inputs, (str, bytes, bytearray, memoryview))
        encoded = [_encode(inputs, "inputs")] if single else _text_list(inputs, "inputs")
        with self._use() as ptr, _Params(self._merged(params)) as p:
            return Generator(ptr, _c_array(encoded), [e.decode("utf-8") for e in encoded], p, single)

    def summarize(self, text: Text, progress: Optional[ProgressCallback] = None,
                  stream: Optional[Callable[[str], Any]] = None, **params: Any) -> Summary:
        """Summarizes a text of any length (map-reduce over chunks when it is longer than the
        input limit). ``progress(done, total, level)`` is called after every batch of chunks and
        at every decoding step; returning True cancels (finish_reason "cancelled").
        ``stream(piece)`` hears the final summary. Returns a Summary."""
        hooks = _Hooks(on_token=stream, on_progress=progress, token_arity=1)
        return self._reply_call(_lib.lib().duet_summarize, _encode(text, "text"), hooks, params, Summary)

    def translate(self, text: Text, to: Optional[str] = None, from_: Optional[str] = None,
                  progress: Optional[ProgressCallback] = None, **params: Any) -> Translation:
        """Translates a text of any length into language ``to`` (from ``from_``, where the model
        takes a source; default: its tokenizer's). Codes: the model's own (``fra_Latn``,
        ``__fr__``, ``fr_XX``, ``>>fra<<``) or ISO 639 (``fr``, ``fra``); ``info["translation"]``
        lists them. An unknown code raises UnknownLanguage, a model that does not translate
        Unsupported. Lines stay lines; long ones are split on sentences. ``progress(done, total,
        level)`` as for summarize. Returns a Translation."""
        target = None if to is None else _encode(to, "to")
        source = None if from_ is None else _encode(from_, "from_")
        hooks = _Hooks(on_progress=progress)

        def call(model: Any, data: bytes, p: Any, callbacks: Any, out: Any) -> int:
            return _lib.lib().duet_translate(model, data, target, source, p, callbacks, out)

        return self._reply_call(call, _encode(text, "text"), hooks, params, Translation)

    def assist(self, question: Text, stream: Optional[Callable[[str], Any]] = None, **params: Any) -> ChatReply:
        """One question, no history (a chat of one turn). ``stream(piece)``; returning True
        cancels. Returns a ChatReply."""
        hooks = _Hooks(on_token=stream, token_arity=1)
        return self._reply_call(_lib.lib().duet_assist, _encode(question, "question"), hooks, params, ChatReply)

    def _reply_call(self, function: Callable[..., int], data: bytes, hooks: _Hooks, params: Dict[str, Any],
                    reply_class: Type[_R]) -> _R:
        """Calls duet_summarize / duet_assist and wraps the duet_reply they return."""
        out = ctypes.c_void_p()
        with self._use() as ptr, _Params(self._merged(params)) as p, hooks:
            status = function(ptr, data, p, ctypes.byref(hooks.struct), ctypes.byref(out))
        try:
            hooks.finish(status)
        except BaseException:
            _lib.lib().duet_reply_free(out.value)
            raise
        return reply_class._take(out.value)

    def chat(self, **params: Any) -> Chat:
        """A new Chat on this model (same as ``duet.Chat(model, **params)``)."""
        from .chat import Chat  # noqa: PLC0415 - chat.py imports this module

        return Chat(self, **params)

    def embed(self, texts: Union[Text, Iterable[Text]], as_numpy: Optional[bool] = None, return_truncated: bool = False,
              **params: Any) -> Any:
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
        buf: Any
        ptr_out: Any
        if np is not None:
            buf = np.zeros((n, dim), dtype=np.float32)
            ptr_out = buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        else:
            buf = (ctypes.c_float * max(n * dim, 1))()
            ptr_out = buf
        flags = (ctypes.c_bool * max(n, 1))()
        with self._use() as ptr, _Params(self._merged(params)) as p:
            check(_lib.lib().duet_embed_with_flags(ptr, _c_array(encoded), n, p, ptr_out, n * dim, flags))
        vectors: Any
        if np is not None:
            vectors = buf[0] if single else buf
        else:
            rows = [list(buf[i * dim:(i + 1) * dim]) for i in range(n)]
            vectors = rows[0] if single else rows
        if return_truncated:
            truncated = [bool(flags[i]) for i in range(n)]
            return vectors, (truncated[0] if single else truncated)
        return vectors

    def rerank(self, query: Text, passages: Iterable[Text], **params: Any) -> List[float]:
        """Scores each passage against ``query`` (higher is more relevant); a list of floats.
        Params: ``rerank_mode`` ("likelihood" or "relevance"), ``rerank_template``,
        ``relevance_tokens``."""
        q = _encode(query, "query")
        encoded = _text_list(passages, "passages")
        scores = (ctypes.c_double * max(len(encoded), 1))()
        with self._use() as ptr, _Params(self._merged(params)) as p:
            check(_lib.lib().duet_rerank(ptr, q, _c_array(encoded), len(encoded), p, scores))
        return [scores[i] for i in range(len(encoded))]
