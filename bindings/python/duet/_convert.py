"""Argument conversion for the C calls: texts and paths to NUL-free UTF-8 bytes, integer range
checks, and the duet_params / duet_model_options objects built from Python dicts (the
``cancel_token`` param included)."""

from __future__ import annotations

import collections.abc
import ctypes
import json
import numbers
import os
from typing import Any, Callable, Dict, Iterable, List, NoReturn, Optional, Tuple, Union

from . import _lib
from ._lib import check
from .cancel import CancelToken
from .errors import InvalidArgument, InvalidParam, InvalidUtf8

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

# What the API accepts as a text (a str, or UTF-8 bytes passed to C unchanged) and as a path.
Text = Union[str, bytes, bytearray, memoryview]
PathArg = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

# (set_int, set_float, set_bool, set_string, unset) of duet_params or duet_model_options
_Setter = Callable[..., Any]
_Setters = Tuple[_Setter, _Setter, _Setter, _Setter, Optional[_Setter]]


def _encode(value: object, what: str) -> bytes:
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


def _encode_path(value: PathArg, what: str) -> bytes:
    try:
        value = os.fspath(value)
    except TypeError:
        raise TypeError(f"`{what}` must be a path (str, bytes or os.PathLike), not {type(value).__name__}") from None
    return _encode(value, what)


def _decode(data: Union[bytes, str]) -> str:
    return data.decode("utf-8") if isinstance(data, bytes) else data


def _text_list(values: Iterable[object], what: str) -> List[bytes]:
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


def _c_array(encoded: List[bytes]) -> ctypes.Array[ctypes.c_char_p]:
    return (ctypes.c_char_p * max(len(encoded), 1))(*encoded)


def _check_int(value: object, what: str, lo: int = _INT64_MIN, hi: int = _INT64_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{what}` must be an int, not {type(value).__name__}")
    value = int(value)
    if not lo <= value <= hi:
        raise OverflowError(f"`{what}` = {value} is out of range [{lo}, {hi}]")
    return value


def _apply_settings(handle: Optional[int], settings: object, setters: _Setters, what: str) -> None:
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

    ptr: Optional[int]

    def __init__(self, settings: Union[Dict[str, Any], Iterable[Tuple[str, Any]]]) -> None:
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

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, None
            _lib.lib().duet_params_free(ptr)

    def __enter__(self) -> Optional[int]:
        return self.ptr

    def __exit__(self, *exc: object) -> None:
        self.free()


def _set_cancel_token(params: Optional[int], token: object) -> None:
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


def _options(settings: object) -> Optional[int]:
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


def _no_float(handle: Optional[int], key: bytes, value: float) -> NoReturn:
    raise TypeError(f"model option `{key.decode()}` cannot be a float (no option takes one)")
