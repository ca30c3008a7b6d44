"""Tests of the Python bindings against the C API's own results (CLI, search goldens) and of
every misuse a Python caller can commit (each must be an exception, never a crash)."""

import gc
import json
import math
import os
import shutil
import subprocess
import sys
import threading

import pytest

import duet

from conftest import FIXTURES

DOC_WORDS = ["river", "council", "library", "storm", "museum", "train", "market", "winter"]


def document(words):
    """The generated document of examples/c/summarize.c."""
    return "".join(DOC_WORDS[(i * 7 + i // 3) % 8] + (". " if i % 11 == 10 else " ") for i in range(words)) + "."


def cli(*args):
    """Runs the duet CLI; returns its stdout (fails the test with its stderr)."""
    env = dict(os.environ)
    proc = subprocess.run([os.environ["DUET_CLI"], *args], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def assert_same_as_cli(generations, cli_json):
    results = json.loads(cli_json)["results"]
    assert len(results) == len(generations)
    for got, want in zip(generations, results):
        got = got.as_dict()
        for key in ("input", "input_tokens", "input_truncated", "finish_reason"):
            assert got[key] == want[key], key
        assert len(got["sequences"]) == len(want["sequences"])
        for g, w in zip(got["sequences"], want["sequences"]):
            assert g["token_ids"] == w["token_ids"]
            assert g["text"] == w["text"]
            assert g["finish_reason"] == w["finish_reason"]
            assert g["score"] == pytest.approx(w["score"], abs=1e-6)


# --- library and module ---------------------------------------------------------------------

def test_version_and_library():
    assert duet.version().split(".")[0] == "0"
    assert os.path.realpath(duet.library_path()) == os.path.realpath(os.environ["DUET_LIBRARY"])
    assert duet.status_name(4) == "DUET_STATUS_UNKNOWN_PARAM"
    assert duet.status_name(12345) == "DUET_STATUS_UNKNOWN"
    duet.runtime_init(os.environ["DUET_ORT_LIBRARY"])  # later calls do nothing, and succeed
    with pytest.raises(duet.LibraryNotFound):
        duet.load_library("/nonexistent/libduet.so")  # another library than the loaded one


def _run_python(code, env, *args):
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=60)


def test_library_lookup_order(tmp_path):
    package = os.path.dirname(os.path.abspath(duet.__file__))
    env = {k: v for k, v in os.environ.items() if k != "DUET_LIBRARY"}
    env["PYTHONPATH"] = str(tmp_path)
    # a libduet.so in the package folder is found without DUET_LIBRARY
    copy = tmp_path / "duet"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    shutil.copy(os.environ["DUET_LIBRARY"], copy / "libduet.so")
    proc = _run_python("import duet; duet.version(); print(duet.library_path())", env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(copy / "libduet.so")
    # DUET_LIBRARY wins over the package folder, and a wrong one is an error, not a fallback
    env["DUET_LIBRARY"] = str(tmp_path / "missing" / "libduet.so")
    proc = _run_python("import duet\ntry:\n duet.version()\nexcept duet.LibraryNotFound as e:\n print('LNF', e)", env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("LNF") and "DUET_LIBRARY" in proc.stdout
    # an explicit path wins over everything
    proc = _run_python(f"import duet; duet.load_library({str(copy / 'libduet.so')!r}); print(duet.library_path())", env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(copy / "libduet.so")


# --- generate ---------------------------------------------------------------------------------

def test_generate_matches_cli_t5(fixtures):
    with duet.Model(fixtures / "t5-tiny", max_new_tokens=12) as model:
        got = model.generate(["translate English to German: Hello.", "你好，世界 🙂"])
    want = cli("generate", "--model", str(fixtures / "t5-tiny"), "--json", "--set", "max_new_tokens=12",
               "translate English to German: Hello.", "你好，世界 🙂")
    assert_same_as_cli(got, want)


def test_generate_beam_return_sequences_matches_cli(t5, fixtures):
    got = t5.generate("summarize: The quick brown fox jumps over the lazy dog.", num_beams=4,
                      num_return_sequences=2, max_new_tokens=10, early_stopping=True, length_penalty=0.5)
    assert len(got.sequences) == 2 and got.text == got.sequences[0].text
    want = cli("generate", "--model", str(fixtures / "t5-tiny"), "--json", "--set", "num_beams=4",
               "--set", "num_return_sequences=2", "--set", "max_new_tokens=10", "--set", "early_stopping=true",
               "--set", "length_penalty=0.5", "summarize: The quick brown fox jumps over the lazy dog.")
    assert_same_as_cli([got], want)


def test_generate_bart_list_params_matches_cli(bart, fixtures):
    params = dict(max_new_tokens=8, num_beams=3, suppress_tokens=[5, 6], no_repeat_ngram_size=2)
    got = bart.generate(["Hello world", "The weather is nice today."], **params)
    want = cli("generate", "--model", str(fixtures / "bart-tiny"), "--json", "--set", "max_new_tokens=8",
               "--set", "num_beams=3", "--set", "suppress_tokens=[5,6]", "--set", "no_repeat_ngram_size=2",
               "Hello world", "The weather is nice today.")
    assert_same_as_cli(got, want)


def test_generate_single_returns_generation_and_defaults_merge(fixtures):
    with duet.Model(fixtures / "t5-tiny", max_new_tokens=5) as model:
        assert model.params == {"max_new_tokens": 5}
        g = model.generate("Hello")
        assert isinstance(g, duet.Generation) and str(g) == g.text
        assert len(g.token_ids) <= 5 and g.finish_reason in ("eos", "length")
        assert isinstance(g.score, float) and g.input == "Hello" and g.input_tokens > 0
        assert len(model.generate("Hello", max_new_tokens=3).token_ids) <= 3  # per-call wins
        assert model.generate("Hello", max_new_tokens=None).token_ids != g.token_ids  # None: back to default
        assert model.generate(b"Hello").as_dict() == g.as_dict()  # UTF-8 bytes are accepted
        assert isinstance(model.generate(("Hello",)), list)


def test_generate_stream_and_cancel(t5):
    pieces = []
    g = t5.generate("The weather is nice today.", max_new_tokens=12,
                    stream=lambda piece, index, token: pieces.append((piece, index, token)))
    assert "".join(p for p, _, _ in pieces) == g.text
    assert all(i == 0 for _, i, _ in pieces)
    calls = []

    def cancel(piece, index, token):
        calls.append(piece)
        return True

    g = t5.generate("The weather is nice today.", max_new_tokens=12, stream=cancel)
    assert g.finish_reason == "cancelled" and len(calls) == 1
    # a callback returning a number (e.g. file.write) does not cancel: only True does
    g = t5.generate("The weather is nice today.", max_new_tokens=12, stream=lambda p, i, t: len(p))
    assert g.finish_reason != "cancelled"


def test_generator_is_a_plain_iterator_equal_to_generate(t5, bart, fixtures):
    texts = ["The weather is nice today.", "Hello world"]
    for model, params in ((t5, {}), (bart, {"num_beams": 3})):
        want = model.generate(texts, max_new_tokens=10, **params)
        threads = threading.active_count()
        gen = model.generator(texts, max_new_tokens=10, **params)
        events = list(gen)
        assert threading.active_count() == threads
        assert [g.as_dict() for g in gen.result] == [g.as_dict() for g in want]
        for i, g in enumerate(want):
            assert "".join(e.piece for e in events if e.kind == "text" and e.input == i) == g.text
            finished = [e for e in events if e.kind == "finished" and e.input == i]
            assert [e.finish_reason for e in finished] == [g.finish_reason]
        assert list(gen) == []  # exhausted
        gen.close()


def test_a_request_over_the_memory_budget_is_refused(fixtures):
    with duet.Model(fixtures / "t5-tiny", options={"memory_budget_mb": 1}) as model:
        assert model.info["memory_budget_bytes"] == 1 << 20
        with pytest.raises(duet.OverBudget) as e:
            model.generate(["hello", "world"], num_beams=16, max_new_tokens=20000)
        assert e.value.status == 23 and isinstance(e.value, MemoryError) and "memory_budget_mb" in e.value.message
        assert len(model.generate("hello", max_new_tokens=8).token_ids) == 8


def test_generator_cancel_and_close_and_busy(fixtures):
    with duet.Model(fixtures / "t5-tiny", options={"max_requests": 1}) as model:
        full = model.generate("The weather is nice today.", max_new_tokens=400, min_new_tokens=400)
        gen = model.generator("The weather is nice today.", max_new_tokens=400, min_new_tokens=400)
        first = next(gen)
        assert first.kind == "text"
        with pytest.raises(duet.ModelBusy) as e:
            model.generate("Hello", max_new_tokens=4)
        assert e.value.status == 22
        gen.cancel()
        rest = list(gen)
        assert rest == []
        assert gen.result.finish_reason == "cancelled" and full.text.startswith(gen.result.text)
        with model.generator("Hello", max_new_tokens=30) as g2:
            next(g2)
        # closed mid-way: its place is free again
        assert model.generate("Hello", max_new_tokens=4).text is not None
        with pytest.raises(duet.ClosedError):
            next(g2)


def test_truncation_and_input_too_long(t5):
    with pytest.raises(duet.InputTooLong) as e:
        t5.generate("The weather is nice today.", max_input_tokens=3)
    assert e.value.status == 11
    g = t5.generate("The weather is nice today.", max_input_tokens=3, truncate_input=True, max_new_tokens=4)
    assert g.input_truncated and g.input_tokens == 3


def test_threads_share_a_model(t5):
    want = t5.generate("Hello world", max_new_tokens=8).as_dict()
    results, errors = [], []

    def work():
        try:
            results.append(t5.generate("Hello world", max_new_tokens=8).as_dict())
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [want] * 4


# --- summarize, chat, assist ------------------------------------------------------------------

def test_summarize_long_document_map_reduce(t5):
    events = []
    s = t5.summarize(document(3000), progress=lambda done, total, level: events.append((done, total, level)),
                     summary_length="short", num_beams=2)
    assert isinstance(s, duet.Summary) and s.text
    assert s.levels >= 2 and s.chunks > 1 and s.summaries >= s.chunks
    assert events and {level for _, _, level in events} == set(range(1, s.levels + 1))
    assert all(0 <= done <= total for done, total, _ in events)
    assert (s.chunks, s.chunks, 1) in events  # level 1 reported complete


def test_summarize_stream_and_cancel(t5):
    pieces = []
    s = t5.summarize("The river rose after the storm. The council met in the library. The market opened.",
                     stream=pieces.append)
    assert "".join(pieces) == s.text and s.levels == 1
    s = t5.summarize(document(3000), progress=lambda *a: True, summary_length="short")
    assert s.finish_reason == "cancelled"


def test_translate_matches_the_hugging_face_recipe_and_the_cli(fixtures, tmp_path):
    goldens = json.loads((fixtures / "translation_goldens.json").read_text())["translations"]
    for g in goldens:
        with duet.Model(fixtures / g["model"]) as model:
            t = model.translate(g["text"], to=g["to"], from_=g["from"], **g["params"])
            assert isinstance(t, duet.Translation) and t.chunks == 1
            assert t.text == g["translation"], g
    cases = json.loads((fixtures / "translation_goldens.json").read_text())["cases"]
    for c in (c for c in cases if "bad_words_ids" in c["params"] or "begin_suppress_tokens" in c["params"]):
        with duet.Model(fixtures / c["model"]) as model:
            got = model.generate(c["inputs"], **c["params"])
            want = [r["sequences"][0]["token_ids"] for r in c["results"]]
            assert [g.sequences[0].token_ids for g in got] == want, c["name"]
    g = goldens[0]
    sets = [a for k, v in g["params"].items() for a in ("--set", f"{k}={v}")]
    (tmp_path / "doc.txt").write_text(g["text"])
    got = json.loads(cli("translate", "--model", str(fixtures / g["model"]), "--to", g["to"], "--json", *sets,
                         str(tmp_path / "doc.txt")))
    assert (got["translation"], got["to"], got["chunks"]) == (g["translation"], g["to"], 1)


def test_translate_errors_are_specific(fixtures):
    with duet.Model(fixtures / "nllb-tiny") as model:
        with pytest.raises(duet.UnknownLanguage) as e:
            model.translate("Hello.", to="xx_Latn")
        assert e.value.status == 24 and "fra_Latn" in str(e.value) and isinstance(e.value, ValueError)
        assert len(model.info["translation"]["languages"]) == 202
        events = []
        lines = ["One sentence here. Another one there.", "A third line."]
        params = {"chunk_tokens": 16, "batch_size": 1, "max_new_tokens": 4}
        t = model.translate("\n".join(lines), to="fr", progress=lambda d, n, level: events.append((d, n)), **params)
        assert t.chunks == 3 and events[-1] == (3, 3) and (2, 3) in events
        alone = [model.translate(line, to="fr", **params).text for line in lines]
        assert t.text == "\n".join(alone).rstrip()
    with duet.Model(fixtures / "bart-tiny") as model:
        with pytest.raises(duet.Unsupported):
            model.translate("Hello.", to="fr")


def test_chat_stream_is_an_iterator(bart):
    with duet.Chat(bart, max_new_tokens=12, system_prompt="You answer briefly.") as chat:
        stream = chat.stream("What did the river do after the storm?")
        assert stream.reply is None
        pieces = list(stream)
        assert pieces and all(isinstance(p, str) for p in pieces)
        assert "".join(pieces) == stream.reply.text == chat.last_reply.text
        assert isinstance(stream.reply, duet.ChatReply) and stream.reply.prompt_tokens > 0
        assert len(chat) == 1
        streamed = []
        reply = chat.send("And then?", stream=streamed.append)
        assert "".join(streamed) == reply.text and len(chat) == 2
        for _ in chat.stream("A third question?"):
            pass
        assert len(chat) == 3
        chat.reset()
        assert len(chat) == 0 and chat.turns == 0


def test_chat_stream_abandoned_midway_cancels(t5):
    # min_new_tokens: no EOS before 40 tokens, so every answer outlasts the stream's read-ahead
    with duet.Chat(t5, max_new_tokens=60, min_new_tokens=40, stop_strings=[]) as chat:
        stream = chat.stream("Tell me a long story about the river.")
        first = next(stream)
        assert isinstance(first, str)
        stream.close()  # cancels: the turn is not kept
        assert len(chat) == 0
        assert stream.reply is None or stream.reply.finish_reason == "cancelled"
        # dropping an unfinished stream cancels too, and the chat is usable at once
        it = chat.stream("Another one?")
        next(it)
        del it
        gc.collect()
        assert len(chat) == 0
        # a new call while a stream runs cancels that stream first
        it = chat.stream("Third?")
        next(it)
        reply = chat.send("Fourth?")
        assert reply.finish_reason != "cancelled" and len(chat) == 1
        assert list(it) == []  # the old stream was cancelled: it ends without error
        with chat.stream("Fifth?") as s:
            next(s)
        assert len(chat) == 1


def test_assist(t5):
    pieces = []
    r = t5.assist("What is the capital of France?", stream=pieces.append, max_new_tokens=10)
    assert isinstance(r, duet.ChatReply) and "".join(pieces) == r.text and r.dropped_turns == 0
    with pytest.raises(duet.InvalidArgument):
        t5.assist("")


# --- embeddings, rerank, index ---------------------------------------------------------------

@pytest.fixture(scope="module")
def search_goldens():
    with open(FIXTURES / "search_goldens.json", encoding="utf-8") as f:
        return json.load(f)


def test_embed_matches_goldens(models, search_goldens):
    for case in search_goldens["embeddings"]:
        model = models[case["model"]]
        got = model.embed(case["texts"], as_numpy=False)
        assert len(got) == len(case["vectors"])
        for row, want in zip(got, case["vectors"]):
            assert isinstance(row, list) and len(row) == model.embedding_dim
            assert max(abs(a - b) for a, b in zip(row, want)) < 1e-4
            assert math.isclose(sum(x * x for x in row), 1.0, abs_tol=1e-4)
        one = model.embed(case["texts"][1], as_numpy=False)
        assert max(abs(a - b) for a, b in zip(one, case["vectors"][1])) < 1e-4


def test_embed_numpy(t5, search_goldens):
    np = pytest.importorskip("numpy")
    case = next(c for c in search_goldens["embeddings"] if c["model"] == "t5-tiny")
    got = t5.embed(case["texts"])  # numpy by default when numpy is importable
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (5, t5.embedding_dim)
    assert np.abs(got - np.array(case["vectors"])).max() < 1e-4
    assert t5.embed("Lighthouse", as_numpy=True).shape == (t5.embedding_dim,)


def test_embed_lists_without_numpy(t5):
    got = t5.embed(["a", "b"], as_numpy=False)
    assert isinstance(got, list) and isinstance(got[0][0], float)
    try:
        import numpy  # noqa: F401
    except ImportError:
        assert isinstance(t5.embed(["a"]), list)
        with pytest.raises(ImportError):
            t5.embed(["a"], as_numpy=True)


def test_rerank_matches_goldens(models, search_goldens):
    for case in search_goldens["rerank"]:
        params = {"rerank_mode": case["mode"], "rerank_template": case["template"]}
        if "relevance_tokens" in case:
            params["relevance_tokens"] = case["relevance_tokens"]
        got = models[case["model"]].rerank(case["query"], case["passages"], **params)
        assert len(got) == len(case["scores"])
        assert max(abs(a - b) for a, b in zip(got, case["scores"])) < 1e-4, (case["model"], case["mode"])


def test_index(t5, tmp_path):
    passages = ["Scientists discovered a new species of frog in the rainforest.",
                "The train to the airport leaves every twenty minutes.",
                "科学家在森林里发现了一种新的青蛙。",
                "A team of young scientists found the small green frog near the river after the storm.",
                "The recipe calls for 2 cups of flour, 3 eggs and a pinch of salt."]
    query = "Where did scientists discover a new frog?"
    vectors = t5.embed(passages + [query], as_numpy=False)
    cosines = [sum(a * b for a, b in zip(v, vectors[-1])) for v in vectors[:-1]]
    with duet.Index(t5) as index:
        assert len(index) == 0 and index.search(query) == []
        for i, p in enumerate(passages):
            index.add(10 + i, p)
        assert len(index) == 5
        with pytest.raises(duet.InvalidArgument) as e:
            index.add(10, "duplicate id")
        assert e.value.status == 1
        hits = index.search(query, k=3)
        assert len(hits) == 3 and all(isinstance(i, int) and isinstance(s, float) for i, s in hits)
        best = max(range(5), key=lambda i: cosines[i])
        assert hits[0][0] == 10 + best and hits[0][1] == pytest.approx(cosines[best], abs=1e-4)
        assert len(index.search(query, k=50)) == 5
        reranked = index.search(query, k=2, rerank_top_n=4)
        assert len(reranked) == 2
        path = tmp_path / "index.bin"
        index.save(path)
        index.remove(10)
        with pytest.raises(duet.InvalidArgument):
            index.remove(10)
        assert len(index) == 4
    with duet.Index.load(t5, path) as loaded:
        assert len(loaded) == 5 and loaded.search(query, k=3) == hits
    data = bytearray(path.read_bytes())
    data[30] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(duet.IndexFileError) as e:
        duet.Index.load(t5, path)
    assert e.value.status == 16
    with pytest.raises(duet.IoError):
        duet.Index.load(t5, tmp_path / "missing.bin")


# --- errors and misuse ------------------------------------------------------------------------

def test_public_api():
    assert duet.__version__ == "0.1.0"
    assert duet.__all__[:18] == ["Model", "Chat", "ChatStream", "Index", "CancelToken", "Generation", "Sequence",
                                 "Reply", "Summary", "Translation", "ChatReply", "load_library", "library_path",
                                 "runtime_init", "version", "status_name", "Generator", "Event"]
    assert all(hasattr(duet, name) for name in duet.__all__)
    exceptions = list(duet.errors.__all__)
    assert duet.__all__[18:] == exceptions
    assert all(issubclass(getattr(duet, name), duet.Error) for name in exceptions)


def test_file_errors_are_oserrors(t5, tmp_path):
    with pytest.raises(OSError) as e:
        duet.Model("/nonexistent")
    assert isinstance(e.value, duet.ModelFileMissing) and isinstance(e.value, duet.Error)
    assert e.value.status == 8 and e.value.status_name == "DUET_STATUS_MODEL_FILE_MISSING" and e.value.message
    assert str(e.value) == f"DUET_STATUS_MODEL_FILE_MISSING (8): {e.value.message}"
    with pytest.raises(duet.IoError) as e:
        duet.Index.load(t5, tmp_path / "missing.bin")
    assert isinstance(e.value, OSError) and isinstance(e.value, duet.Error)
    assert e.value.status == 14 and e.value.message
    assert str(e.value) == f"DUET_STATUS_IO (14): {e.value.message}"
    # built in Python too (as error_for_status does), they keep duet's status, message and str()
    for cls, status in ((duet.ModelFileMissing, 8), (duet.IoError, 14)):
        err = duet.errors.error_for_status(status, "the reason")
        assert type(err) is cls and isinstance(err, OSError)
        assert (err.status, err.message, str(err)) == (status, "the reason", f"{err.status_name} ({status}): the reason")
        assert str(cls()) == f"{err.status_name} ({status}): " and cls().message == ""


def test_errors_carry_status(fixtures, t5):
    with pytest.raises(duet.UnknownParam) as e:
        t5.generate("hi", no_such_key=1)
    assert e.value.status == 4 and e.value.status_name == "DUET_STATUS_UNKNOWN_PARAM"
    assert "max_new_tokens" in str(e.value) and isinstance(e.value, duet.Error)
    with pytest.raises(duet.UnknownParam):
        duet.Model(fixtures / "t5-tiny", no_such_key=1)  # refused before the model is opened
    with pytest.raises(duet.InvalidParam) as e:
        t5.generate("hi", num_beams=0)
    assert e.value.status == 5
    with pytest.raises(duet.InvalidParam):
        t5.generate("hi", early_stopping="sometimes")
    with pytest.raises(duet.InvalidParam):
        t5.generate("hi", max_new_tokens=1 << 70)
    with pytest.raises(duet.ModelFileMissing) as e:
        duet.Model("/nonexistent/model")
    assert e.value.status == 8 and e.value.message
    with pytest.raises(duet.InvalidParam):
        duet.Model(fixtures / "t5-tiny", options={"layout": "diagonal"})
    with pytest.raises(duet.UnknownParam):
        duet.Model(fixtures / "t5-tiny", options={"no_such_option": 1})
    with pytest.raises(duet.ProviderUnavailable) as e:
        duet.Model(fixtures / "t5-tiny", options={"providers": "cuda,cpu", "strict_providers": True})
    assert e.value.status == 13
    with duet.Model(fixtures / "bart-tiny", options={"layout": "split", "providers": "cuda,cpu",
                                                    "intra_threads": 1}) as m:
        assert m.info["layout"] == "split" and m.execution_provider == "CPUExecutionProvider"
    with pytest.raises(duet.InvalidArgument):
        t5.rerank("query", [])
    with pytest.raises(duet.InvalidArgument):
        t5.embed([])


def test_model_invalid_and_runtime_not_found(tmp_path, fixtures):
    for name in os.listdir(fixtures / "t5-tiny"):
        os.symlink(fixtures / "t5-tiny" / name, tmp_path / name)
    os.unlink(tmp_path / "config.json")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(duet.ModelInvalid) as e:
        duet.Model(tmp_path)
    assert e.value.status == 9 and "config.json" in e.value.message
    env = dict(os.environ, DUET_ORT_LIBRARY=str(tmp_path / "missing" / "libonnxruntime.so"))
    env.pop("ORT_DYLIB_PATH", None)
    proc = _run_python("import duet, sys\ntry:\n duet.Model(sys.argv[1])\nexcept duet.RuntimeNotFound as e:\n"
                       " print('RNF', e.status)\nelse:\n print('FOUND')", env, str(fixtures / "t5-tiny"))
    assert proc.returncode == 0, proc.stderr
    if proc.stdout.strip() == "FOUND":
        pytest.skip("an ONNX Runtime is installed where libduet also looks")
    assert proc.stdout.strip() == "RNF 6"


def test_close_while_another_thread_generates(fixtures):
    model = duet.Model(fixtures / "t5-tiny")
    started, results = threading.Event(), []

    def work():
        results.append(model.generate("Hello world", max_new_tokens=30, min_new_tokens=30,
                                      stream=lambda *a: started.set()))

    t = threading.Thread(target=work)
    t.start()
    started.wait(10)
    model.close()  # the running call keeps the model until it returns
    t.join()
    assert len(results) == 1 and len(results[0].token_ids) == 30
    with pytest.raises(duet.ClosedError):
        model.generate("Hello")


def test_closed_handles(fixtures):
    model = duet.Model(fixtures / "t5-tiny")
    chat = duet.Chat(model, max_new_tokens=4)
    index = duet.Index(model)
    index.add(1, "one")
    model.close()
    model.close()  # idempotent
    assert model.closed
    with pytest.raises(duet.ClosedError) as e:
        model.generate("hi")
    assert isinstance(e.value, duet.Error) and e.value.status == 2
    for call in (lambda: model.embed(["x"]), lambda: model.summarize("x"), lambda: model.info,
                 lambda: duet.Chat(model), lambda: duet.Index(model)):
        with pytest.raises(duet.ClosedError):
            call()
    # chats and indexes keep the model alive in C
    assert chat.send("still there?").finish_reason in ("eos", "length", "stop_string")
    assert index.search("one", k=1)[0][0] == 1
    chat.close()
    index.close()
    with pytest.raises(duet.ClosedError):
        chat.send("x")
    with pytest.raises(duet.ClosedError):
        chat.stream("x")
    with pytest.raises(duet.ClosedError):
        len(chat)
    with pytest.raises(duet.ClosedError):
        index.search("x")
    with pytest.raises(duet.ClosedError):
        with model:
            pass
    with duet.Model(fixtures / "t5-tiny") as m:
        pass
    assert m.closed


def test_close_from_inside_a_callback_is_deferred(fixtures):
    model = duet.Model(fixtures / "t5-tiny")

    def close_now(piece, index, token):
        model.close()

    g = model.generate("Hello world", max_new_tokens=6, stream=close_now)
    assert g.text and model.closed
    with pytest.raises(duet.ClosedError):
        model.generate("Hello")


def test_wrong_types(t5):
    for bad in (123, None, 1.5, {"a": 1}):
        with pytest.raises(TypeError):
            t5.generate(bad)
    with pytest.raises(TypeError):
        t5.generate(["ok", 5])
    with pytest.raises(TypeError):
        t5.generate("hi", max_new_tokens=object())
    with pytest.raises(TypeError):
        t5.generate("hi", stream="not callable")
    with pytest.raises(TypeError):
        t5.rerank("q", "a single string is not a list")
    with pytest.raises(TypeError):
        t5.embed(42)
    with pytest.raises(TypeError):
        duet.Model(42)
    with pytest.raises(TypeError):
        duet.Model(FIXTURES / "t5-tiny", options=["layout"])
    with pytest.raises(TypeError):
        duet.Chat("not a model")
    with duet.Index(t5) as index:
        with pytest.raises(TypeError):
            index.add("1", "text")
        with pytest.raises(TypeError):
            index.add(1, 2)
        with pytest.raises(OverflowError):
            index.add(1 << 64, "text")
        with pytest.raises(TypeError):
            index.search("q", k="5")
        with pytest.raises(OverflowError):
            index.search("q", k=-1)
        with pytest.raises(duet.InvalidArgument):
            index.search("q", k=0)


def test_invalid_utf8_and_nul(t5, tmp_path):
    with pytest.raises(duet.InvalidUtf8) as e:
        t5.generate(b"\xff\xfe")  # bytes reach C, which refuses them
    assert e.value.status == 3
    with pytest.raises(duet.InvalidUtf8):
        t5.generate(["fine", b"\xe4\xbd"])
    with pytest.raises(duet.InvalidUtf8):
        t5.generate("lone surrogate \udcff")  # cannot even be encoded
    with pytest.raises(duet.InvalidUtf8):
        t5.summarize(b"\xff\xfe")
    with pytest.raises(duet.InvalidUtf8):
        t5.embed([b"\xc3\x28"])
    with pytest.raises(duet.InvalidUtf8):
        t5.rerank(b"\xff", ["passage"])
    with pytest.raises(duet.InvalidUtf8):
        t5.generate("hi", stop_strings=b"\xff")
    with pytest.raises(duet.InvalidUtf8):
        duet.Model(b"\xc3\x28")
    with duet.Chat(t5) as chat:
        with pytest.raises(duet.InvalidUtf8):
            chat.send(b"\xff")
        with pytest.raises(duet.InvalidUtf8):
            list(chat.stream(b"\xff"))  # raised by the iterator, the chat stays usable
        assert chat.send("ok?").text is not None
    with duet.Index(t5) as index:
        with pytest.raises(duet.InvalidUtf8):
            index.add(1, b"\xff")
        with pytest.raises(duet.InvalidUtf8):
            index.save(os.fsdecode(bytes(tmp_path) + b"/\xff.bin"))
    with pytest.raises(duet.InvalidArgument):
        t5.generate("a\0b")  # C strings cannot hold NUL


def test_exception_in_callbacks_propagates(t5):
    class Boom(Exception):
        pass

    calls = []

    def token_cb(piece, index, token):
        calls.append(piece)
        raise Boom("from the token callback")

    with pytest.raises(Boom):
        t5.generate("The weather is nice today.", max_new_tokens=12, stream=token_cb)
    assert len(calls) == 1  # the exception cancelled the call

    def progress_cb(done, total, level):
        raise Boom("from the progress callback")

    with pytest.raises(Boom):
        t5.summarize(document(1000), progress=progress_cb, summary_length="short")
    with pytest.raises(ZeroDivisionError):
        t5.assist("Why?", stream=lambda piece: 1 / 0)
    with duet.Chat(t5, max_new_tokens=8) as chat:
        with pytest.raises(Boom):
            chat.send("Hello?", stream=lambda piece: (_ for _ in ()).throw(Boom()))
        assert len(chat) == 0  # the cancelled turn is not kept
        assert chat.send("Hello again?").text is not None and len(chat) == 1

        def reenter(piece):
            chat.send("nested")

        with pytest.raises(duet.BusyError):
            chat.send("Outer?", stream=reenter)
    assert t5.generate("still fine", max_new_tokens=3).text is not None


def test_wrong_arity_callback_is_an_exception(t5):
    with pytest.raises(TypeError):
        t5.generate("Hello", max_new_tokens=4, stream=lambda: None)


# --- cancel tokens and timeouts (libduet builds that have them) -------------------------------

needs_cancel_tokens = pytest.mark.skipif(
    not duet._lib.has("duet_cancel_token_new"), reason="this libduet has no cancel tokens")


@needs_cancel_tokens
def test_cancel_token(t5):
    with duet.CancelToken() as token:
        token.cancel()
        with pytest.raises(duet.Cancelled) as e:
            t5.generate("Hello world", max_new_tokens=8, cancel_token=token)
        assert e.value.status == 17
        token.reset()
        assert t5.generate("Hello world", max_new_tokens=8, cancel_token=token).text is not None

        def cancel_from_callback(piece, index, token_id):
            token.cancel()

        with pytest.raises(duet.Cancelled):
            t5.generate("Hello world", max_new_tokens=20, min_new_tokens=20, cancel_token=token,
                        stream=cancel_from_callback)
        token.reset()
        done = threading.Event()

        def cancel_from_another_thread(done_, total, level):
            if not done.is_set():
                done.set()
                threading.Thread(target=token.cancel).start()

        with pytest.raises(duet.Cancelled):
            t5.summarize(document(3000), progress=cancel_from_another_thread, cancel_token=token)
    with pytest.raises(TypeError):
        t5.generate("Hello", cancel_token="not a token")
    with pytest.raises(duet.ClosedError):
        token.cancel()


@needs_cancel_tokens
def test_timeout(t5):
    with pytest.raises(duet.DeadlineExceeded) as e:
        t5.summarize(document(3000), summary_length="short", timeout_ms=1)
    assert e.value.status == 18 and isinstance(e.value, TimeoutError)


# --- the bundled embedder, hybrid search ----------------------------------------------------

def test_embedder_matches_sentence_transformers(minilm):
    ref = json.loads((FIXTURES / "minilm_reference.json").read_text())
    vectors, truncated = minilm.embed(ref["texts"], as_numpy=False, return_truncated=True, truncate_input=True, batch_size=8)
    for got, want in zip(vectors, ref["vectors"]):
        assert max(abs(a - b) for a, b in zip(got, want)) < 1e-4
    assert truncated == [t > ref["max_seq_length"] for t in ref["tokens_untruncated"]]
    assert minilm.info["kind"] == "embedding" and minilm.embedding_dim == 384
    with pytest.raises(duet.InputTooLong):
        minilm.embed("word " * 400)
    for call in (lambda: minilm.generate("hi"), lambda: minilm.summarize("A text. Another one."),
                 lambda: minilm.rerank("q", ["p"])):
        with pytest.raises(duet.Unsupported) as e:
            call()
        assert e.value.status == 20 and "embedding model" in str(e.value)


def test_index_hybrid_search_on_real_descriptions(minilm, t5, tmp_path, repo):
    lines = (repo / "examples" / "data" / "debian-packages.txt").read_text().splitlines()
    with duet.Index(minilm, truncate_input=True, batch_size=16) as index:
        index.add_many(range(1, len(lines) + 1), lines)
        assert len(index) == len(lines)
        package = lambda hit: index.text(hit[0]).split(":")[0]  # noqa: E731
        for mode in ("vector", "hybrid"):
            assert package(index.search("capture and inspect network packets", k=3, mode=mode)[0]) == "tcpdump"
        assert package(index.search("pandoc markup converter", mode="keyword")[0]) == "pandoc"
        assert index.search("zzzz qqqq", mode="keyword") == []
        with pytest.raises(duet.InvalidParam):
            index.search("x", mode="semantic")
        with pytest.raises(duet.InvalidArgument):
            index.add_many([1000, 1000], ["a", "b"])
        assert len(index) == len(lines), "a failed batch adds nothing"
        with pytest.raises(duet.InvalidArgument):
            index.text(99999)
        path = tmp_path / "packages.idx"
        index.save(path)
    with pytest.raises(duet.IndexModelMismatch) as e:
        duet.Index.load(t5, path)
    assert e.value.status == 21
    with duet.Index.load(minilm, path) as loaded:
        assert loaded.text(1).startswith("vim:")


EXIT_WHILE_CALLING_BACK = r"""
import sys, threading, time
import duet
model = duet.Model(sys.argv[1])
if sys.argv[2] == "chat-stream":
    stream = model.chat(max_new_tokens=300, min_new_tokens=300).stream("Hello there")
    print(next(iter(stream)), flush=True)
else:  # a daemon thread inside a streaming generate
    started = threading.Event()
    def on_piece(piece, index, token):
        started.set()
        time.sleep(0.01)
    threading.Thread(target=lambda: model.generate("The museum will reopen.", stream=on_piece, max_new_tokens=300,
                                                   min_new_tokens=300), daemon=True).start()
    started.wait()
print("exiting", flush=True)
"""


@pytest.mark.parametrize("case", ["chat-stream", "thread-in-generate"])
def test_interpreter_exit_while_a_call_streams_does_not_abort(case):
    """A callback into Python after the interpreter began finalizing would end its thread inside
    duet and abort the process: at exit, calls that call back are cancelled and waited for."""
    proc = _run_python(EXIT_WHILE_CALLING_BACK, dict(os.environ), str(FIXTURES / "t5-tiny"), case)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.strip().endswith("exiting") and "FATAL" not in proc.stderr, proc.stderr[-2000:]
