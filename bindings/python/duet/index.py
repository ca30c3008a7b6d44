"""Index: an in-memory search index of (id, text) embedded with a Model (vector, keyword and
hybrid search, reranking, save and load)."""

from __future__ import annotations

import ctypes
from typing import Any, Iterable, List, Optional, Tuple, Type, TypeVar

from . import _lib
from ._convert import PathArg, Text, _c_array, _check_int, _encode, _encode_path, _Params, _text_list
from ._handle import _Handle
from ._lib import check
from .errors import InvalidArgument
from .model import Model

_I = TypeVar("_I", bound="Index")


class Index(_Handle):
    """An in-memory search index of (id, text) embedded with a model: ``Index(model, **params)``
    (params are used for embedding, searching and reranking). ``add(id, text)``,
    ``add_many(ids, texts)``, ``remove(id)``, ``text(id)``,
    ``search(query, k=5, rerank_top_n=0, mode=None)`` -> [(id, score), ...] best first,
    ``save(path)``, ``Index.load(model, path)`` (IndexModelMismatch when another model made it),
    ``len(index)``. Thread-safe."""

    _free_fn = "duet_index_free"

    def __init__(self, model: Model, **params: Any) -> None:
        super().__init__()
        if not isinstance(model, Model):
            raise TypeError(f"model must be a duet.Model, not {type(model).__name__}")
        self.model = model
        out = ctypes.c_void_p()
        with model._use() as mp, _Params(model._merged(params)) as p:
            check(_lib.lib().duet_index_new(mp, p, ctypes.byref(out)))
        self._ptr = out.value

    @classmethod
    def load(cls: Type[_I], model: Model, path: PathArg, **params: Any) -> _I:
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

    def add(self, id: int, text: Text) -> None:
        """Adds ``text`` under the int64 ``id``; an id already present is InvalidArgument."""
        id = _check_int(id, "id")
        data = _encode(text, "text")
        with self._use() as ptr:
            check(_lib.lib().duet_index_add(ptr, id, data))

    def remove(self, id: int) -> None:
        """Removes ``id``; an absent id is InvalidArgument."""
        id = _check_int(id, "id")
        with self._use() as ptr:
            check(_lib.lib().duet_index_remove(ptr, id))

    def __len__(self) -> int:
        out = ctypes.c_size_t()
        with self._use() as ptr:
            check(_lib.lib().duet_index_len(ptr, ctypes.byref(out)))
        return out.value

    def add_many(self, ids: Iterable[int], texts: Iterable[Text]) -> None:
        """Adds ``texts`` under ``ids`` (int64s of your choosing), embedded in batches: all of
        them or, when any fails, none."""
        encoded = _text_list(texts, "texts")
        id_list = [_check_int(i, "id") for i in ids]
        if len(id_list) != len(encoded):
            raise InvalidArgument(f"{len(id_list)} ids for {len(encoded)} texts")
        c_ids = (ctypes.c_int64 * max(len(id_list), 1))(*id_list)
        with self._use() as ptr:
            check(_lib.lib().duet_index_add_batch(ptr, c_ids, _c_array(encoded), len(encoded)))

    def text(self, id: int) -> str:
        """The stored text of ``id``; InvalidArgument when absent."""
        id = _check_int(id, "id")
        out = ctypes.c_void_p()
        with self._use() as ptr:
            check(_lib.lib().duet_index_text(ptr, id, ctypes.byref(out)))
        text: str = _lib.take_string(out.value)
        return text

    def search(self, query: Text, k: int = 5, rerank_top_n: int = 0, mode: Optional[str] = None,
               **params: Any) -> List[Tuple[int, float]]:
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

    def save(self, path: PathArg) -> None:
        """Writes the index to one file (format version and checksum included)."""
        encoded = _encode_path(path, "path")
        with self._use() as ptr:
            check(_lib.lib().duet_index_save(ptr, encoded))
