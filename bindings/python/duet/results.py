"""What the calls return: Sequence and Generation (generate), Reply, Summary and ChatReply
(summarize, chat, assist), and their reading from the C result and reply objects."""

from __future__ import annotations

import ctypes
from typing import Any, ClassVar, Dict, List, Optional, Tuple, Type, TypeVar

from . import _lib
from ._convert import _decode
from ._lib import check

FINISH_REASONS = {0: "eos", 1: "length", 2: "stop_string", 3: "cancelled"}

_R = TypeVar("_R", bound="Reply")


class Sequence:
    """One generated sequence: text, token_ids, score, finish_reason ("eos", "length",
    "stop_string" or "cancelled")."""

    __slots__ = ("text", "token_ids", "score", "finish_reason")

    text: str
    token_ids: List[int]
    score: float
    finish_reason: str

    def __init__(self, text: str, token_ids: List[int], score: float, finish_reason: str) -> None:
        self.text, self.token_ids, self.score, self.finish_reason = text, token_ids, score, finish_reason

    def as_dict(self) -> Dict[str, Any]:
        return {"token_ids": list(self.token_ids), "text": self.text, "score": self.score,
                "finish_reason": self.finish_reason}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return f"Sequence(text={self.text!r}, score={self.score:.4f}, finish_reason={self.finish_reason!r})"


class Generation:
    """What one input produced. ``sequences``: num_return_sequences Sequence objects, best first;
    ``text``, ``token_ids``, ``score`` and ``finish_reason`` are the best sequence's.
    ``input_tokens`` / ``input_truncated``: the encoded input. ``as_dict()`` has the layout of
    one entry of the CLI's ``--json`` "results"."""

    __slots__ = ("input", "sequences", "input_tokens", "input_truncated")

    input: Optional[str]
    sequences: List[Sequence]
    input_tokens: int
    input_truncated: bool

    def __init__(self, input: Optional[str], sequences: List[Sequence], input_tokens: int,
                 input_truncated: bool) -> None:
        self.input, self.sequences = input, sequences
        self.input_tokens, self.input_truncated = input_tokens, input_truncated

    @property
    def text(self) -> str:
        return self.sequences[0].text

    @property
    def token_ids(self) -> List[int]:
        return self.sequences[0].token_ids

    @property
    def score(self) -> float:
        return self.sequences[0].score

    @property
    def finish_reason(self) -> str:
        return self.sequences[0].finish_reason

    def as_dict(self) -> Dict[str, Any]:
        return {"input": self.input, "input_tokens": self.input_tokens, "input_truncated": self.input_truncated,
                "sequences": [s.as_dict() for s in self.sequences], "finish_reason": self.finish_reason}

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Generation(text={self.text!r}, finish_reason={self.finish_reason!r}, sequences={len(self.sequences)})"


class Reply:
    """The answer of summarize, chat or assist: ``text``, ``finish_reason`` and ``stats`` (a dict
    of the numbers duet_reply_stat gives)."""

    _STATS: ClassVar[Tuple[str, ...]] = ()
    __slots__ = ("text", "finish_reason", "stats")

    text: str
    finish_reason: str
    stats: Dict[str, int]

    def __init__(self, text: str, finish_reason: str, stats: Dict[str, int]) -> None:
        self.text, self.finish_reason, self.stats = text, finish_reason, stats

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(text={self.text!r}, finish_reason={self.finish_reason!r}, stats={self.stats})"

    @classmethod
    def _read(cls: Type[_R], ptr: Optional[int]) -> _R:
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
    def _take(cls: Type[_R], ptr: Optional[int]) -> _R:
        try:
            return cls._read(ptr)
        finally:
            _lib.lib().duet_reply_free(ptr)


class Summary(Reply):
    """summarize()'s reply; ``chunks``, ``levels`` (map-reduce depth) and ``summaries``."""

    _STATS = ("chunks", "levels", "summaries")
    __slots__ = ()

    @property
    def chunks(self) -> int:
        return self.stats["chunks"]

    @property
    def levels(self) -> int:
        return self.stats["levels"]

    @property
    def summaries(self) -> int:
        return self.stats["summaries"]


class Translation(Reply):
    """translate()'s reply; ``chunks`` (pieces of the text translated, in order)."""

    _STATS = ("chunks",)
    __slots__ = ()

    @property
    def chunks(self) -> int:
        return self.stats["chunks"]


class ChatReply(Reply):
    """A chat/assist reply; ``dropped_turns``, ``prompt_tokens`` and ``input_truncated``."""

    _STATS = ("dropped_turns", "prompt_tokens", "input_truncated")
    __slots__ = ()

    @property
    def dropped_turns(self) -> int:
        return self.stats["dropped_turns"]

    @property
    def prompt_tokens(self) -> int:
        return self.stats["prompt_tokens"]

    @property
    def input_truncated(self) -> bool:
        return bool(self.stats["input_truncated"])


def _read_result(ptr: Optional[int], inputs: List[str]) -> List[Generation]:
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
