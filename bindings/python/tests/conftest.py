"""Test setup: libduet and ONNX Runtime from this checkout unless the environment names others.

DUET_LIBRARY defaults to <repo>/target/release/libduet.so and DUET_ORT_LIBRARY to
<repo>/.ort/lib/libonnxruntime.so.1.31.1, the repository root being found from this file.
"""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures"

os.environ.setdefault("DUET_LIBRARY", str(REPO / "target" / "release" / "libduet.so"))
os.environ.setdefault("DUET_ORT_LIBRARY", str(REPO / ".ort" / "lib" / "libonnxruntime.so.1.31.1"))
os.environ.setdefault("DUET_CLI", str(REPO / "target" / "release" / "duet"))

import duet  # noqa: E402 - after the environment is set


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(scope="session")
def fixtures():
    return FIXTURES


@pytest.fixture(scope="session")
def t5():
    with duet.Model(FIXTURES / "t5-tiny") as model:
        yield model


@pytest.fixture(scope="session")
def bart():
    with duet.Model(FIXTURES / "bart-tiny") as model:
        yield model


@pytest.fixture(scope="session")
def models(t5, bart):
    return {"t5-tiny": t5, "bart-tiny": bart}


@pytest.fixture(scope="session")
def minilm():
    """The bundled embedder (`make embedder`; make test builds it first)."""
    path = REPO / "models" / "all-MiniLM-L6-v2"
    assert (path / "model.onnx").is_file(), f"{path} is missing: run `make embedder`"
    with duet.Model(path) as model:
        yield model
