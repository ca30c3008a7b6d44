"""Chat (a conversation on a Model) and ChatStream (one answer as an iterator of pieces, decoded
on a worker thread)."""

from __future__ import annotations

import collections
import ctypes
import enum
import threading
from typing import Any, Callable, Deque, Final, Optional, Union

from . import _exit, _lib
from ._convert import Text, _encode, _Params
from ._handle import _Closing, _Handle
from ._hooks import _Hooks
from ._lib import Callbacks, PROGRESS_CALLBACK, TOKEN_CALLBACK, check
from .errors import BusyError, error_for_status
from .model import Model
from .results import ChatReply


class Chat(_Handle):
    """A conversation: ``Chat(model, **params)`` (the model's default params merged with these;
    chat keys: ``system_prompt``, ``chat_template``, ``chat_turn_template``, generation keys).

    ``send(text, stream=None)`` answers and returns a ChatReply; ``stream(text)`` returns a
    ChatStream, an iterator of text pieces whose ``reply`` is set once it is exhausted.
    ``reset()`` forgets the turns; ``len(chat)`` is the number of turns kept. A Chat serves one
    call at a time: a new send()/stream() first cancels a stream still running, and a call from
    inside one of its own callbacks raises BusyError."""

    _free_fn = "duet_chat_free"

    def __init__(self, model: Model, **params: Any) -> None:
        super().__init__()
        if not isinstance(model, Model):
            raise TypeError(f"model must be a duet.Model, not {type(model).__name__}")
        self.model = model
        self._call = threading.Lock()
        # who holds the chat: the calling thread's ident, or the worker thread of a stream
        self._owner: Optional[Union[int, threading.Thread]] = None
        self._stream: Optional[_StreamState] = None  # the _StreamState of a running stream
        self.last_reply: Optional[ChatReply] = None
        out = ctypes.c_void_p()
        with model._use() as mp, _Params(model._merged(params)) as p:
            check(_lib.lib().duet_chat_new(mp, p, ctypes.byref(out)))
        self._ptr = out.value

    def _begin(self, owner: Union[int, threading.Thread]) -> None:
        if self._owner is not None and self._owner == threading.get_ident():
            raise BusyError("this Chat is busy: it was called from inside one of its own callbacks")
        running = self._stream
        if running is not None:
            running.cancel_and_wait()
        self._call.acquire()
        self._owner = owner

    def _end(self) -> None:
        self._owner = None
        self._call.release()

    def send(self, text: Text, stream: Optional[Callable[[str], Any]] = None) -> ChatReply:
        """Sends a user message; returns the ChatReply. ``stream(piece)`` hears the answer as it
        is decided; returning True cancels (a cancelled turn is not kept)."""
        data = _encode(text, "text")
        hooks = _Hooks(on_token=stream, token_arity=1)
        self._begin(threading.get_ident())
        try:
            out = ctypes.c_void_p()
            with self._use() as ptr, hooks:
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

    def stream(self, text: Text) -> ChatStream:
        """Sends a user message and returns a ChatStream: iterate it for the answer's pieces;
        its ``reply`` (and this chat's ``last_reply``) is the ChatReply once it is exhausted.
        Closing it (or dropping it) before the end cancels the turn."""
        data = _encode(text, "text")
        self._acquire()  # fails now, not in the worker, when closed
        self._release()
        return ChatStream(self, data)

    def reset(self) -> None:
        """Forgets every turn."""
        self._begin(threading.get_ident())
        try:
            with self._use() as ptr:
                check(_lib.lib().duet_chat_reset(ptr))
        finally:
            self._end()

    def __len__(self) -> int:
        out = ctypes.c_size_t()
        with self._use() as ptr:
            check(_lib.lib().duet_chat_num_turns(ptr, ctypes.byref(out)))
        return out.value

    @property
    def turns(self) -> int:
        return len(self)

    def close(self) -> None:
        running = getattr(self, "_stream", None)
        if running is not None:
            running.cancel_and_wait()
        super().close()


class _End(enum.Enum):
    """The sentinel _StreamState.get() returns when the answer is over or cancelled."""

    END = 0


_END: Final = _End.END


class _StreamState:
    """What the worker thread of a ChatStream shares with it (the worker never holds the
    ChatStream itself, so dropping the ChatStream cancels).

    Pieces pass through a bounded buffer: the worker (inside duet_chat_send's callback) waits
    while `AHEAD` pieces are unread, so an abandoned stream is cancelled at most `AHEAD` pieces
    after the last one read, instead of running to its end."""

    AHEAD = 4

    def __init__(self, chat: Chat, data: bytes) -> None:
        self.chat = chat
        self.items: Deque[str] = collections.deque()
        self.cond = threading.Condition()
        self.done = False
        self.cancelled = False
        self.reply: Optional[ChatReply] = None
        self.error: Optional[BaseException] = None
        self.c_token = TOKEN_CALLBACK(self._on_token)
        self.struct = Callbacks(self.c_token, PROGRESS_CALLBACK(), None)
        self.thread = threading.Thread(target=self._run, args=(data,), name="duet-chat-stream", daemon=True)
        _exit.begin(self, "cancel")

    def _on_token(self, _user_data: Optional[int], _input_index: int, piece: int, piece_len: int, _token_id: int) -> int:
        try:
            text = ctypes.string_at(piece, piece_len).decode("utf-8") if piece_len else ""
            with self.cond:
                while len(self.items) >= self.AHEAD and not self.cancelled:
                    self.cond.wait()
                if self.cancelled or _exit.exiting():
                    return 1
                self.items.append(text)
                self.cond.notify_all()
            return 0
        except BaseException as e:  # noqa: BLE001 - nothing may unwind into C
            self.error = e
            return 1

    def _run(self, data: bytes) -> None:
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
            _exit.end(self)

    def get(self) -> Union[str, _End]:
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

    def cancel(self) -> None:
        with self.cond:
            self.cancelled = True
            self.cond.notify_all()

    def cancel_and_wait(self) -> None:
        self.cancel()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join()


class ChatStream(_Closing):
    """An iterator of the pieces of one chat answer (from ``Chat.stream``). After the last
    piece ``reply`` holds the ChatReply. ``close()`` (also on ``with`` exit, when the object is
    dropped, and when the chat starts another call) cancels an unfinished answer, waits for it
    to stop and ends the iteration; a cancelled turn is not kept. The answer is decoded on a
    worker thread at most a few pieces ahead of the reader."""

    def __init__(self, chat: Chat, data: bytes) -> None:
        self._state = _StreamState(chat, data)
        self._finished = False
        chat._begin(self._state.thread)  # the worker holds the chat until it is done
        chat._stream = self._state
        try:
            self._state.thread.start()
        except BaseException:
            chat._stream = None
            chat._end()
            _exit.end(self._state)
            raise

    @property
    def reply(self) -> Optional[ChatReply]:
        """The ChatReply, once the stream is exhausted (None before)."""
        return self._state.reply if self._finished else None

    @property
    def text(self) -> Optional[str]:
        return self.reply.text if self.reply is not None else None

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> str:
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

    def close(self) -> None:
        """Cancels the answer if it is still running and waits for the worker."""
        state = getattr(self, "_state", None)
        if state is None or self._finished:
            return
        state.cancel_and_wait()
        self._finished = True
        state.error = None
