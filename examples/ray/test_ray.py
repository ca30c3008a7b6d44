"""duet on a local Ray cluster (`ray.init()` on this machine): the Ray Data pipeline
(duet.ray) summarizes 2,000 rows and embeds 1,500 through an actor pool, equal to the
sequential results exactly, and resumes by file; the Ray Serve deployment (serve_app.py) answers
as the model does, streaming included.

    DUET_LIBRARY=target/release/libduet.so DUET_ORT_LIBRARY=... .venv-ray/bin/python -m pytest examples/ray
"""
import http.client
import json
import os
import socket
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bindings/python"))
sys.path.insert(0, str(ROOT / "examples/ray"))

import duet  # noqa: E402
import duet.ray  # noqa: E402

MODEL = str(ROOT / "tests/fixtures/t5-tiny")
SUMMARY = {"max_new_tokens": 8, "min_new_tokens": 2}


def rows(n, seed):
    """Real package descriptions, each made distinct by its row number."""
    lines = (ROOT / "examples/data/debian-packages.txt").read_text().splitlines()
    descriptions = [line.split(": ", 1)[1] for line in lines if ": " in line]
    return [f"{descriptions[(i * 7 + seed) % len(descriptions)][: 60 + (i * 13) % 300]} (row {i})" for i in range(n)]


@pytest.fixture(scope="module")
def cluster():
    env = {k: os.environ[k] for k in ("DUET_LIBRARY", "DUET_ORT_LIBRARY") if k in os.environ}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "bindings/python"), str(ROOT / "examples/ray")])
    # Logical CPUs beyond the 2 cores: the actor pool takes 2, the reads and Serve need room too.
    ray.init(num_cpus=6, include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=False)
    yield
    ray.shutdown()


def test_a_pipeline_equals_the_sequential_results_and_resumes_by_file(cluster, tmp_path):
    jsonl, parquet = tmp_path / "in" / "part-0.jsonl", tmp_path / "in" / "part-1.parquet"
    jsonl.parent.mkdir()
    first, second = rows(500, 0), rows(1500, 3)
    jsonl.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(first)))
    pq.write_table(pa.table({"id": list(range(len(second))), "text": second}), parquet)
    out = tmp_path / "out"

    done = duet.ray.process_files([jsonl, parquet], out, MODEL, "summarize", concurrency=2, batch_size=100, params=SUMMARY)
    assert [p.name for p in done] == ["part-0.jsonl", "part-1.parquet"]
    got = [json.loads(line) for line in done[0].read_text().splitlines()] + pq.read_table(done[1]).to_pylist()
    assert [r["id"] for r in got] == list(range(500)) + list(range(1500)), "rows kept in order"
    expected = duet.ray.sequential(first + second, MODEL, "summarize", params=SUMMARY)
    assert [r["summary"] for r in got] == expected

    vectors = duet.ray.process_files([parquet], tmp_path / "vectors", MODEL, "embed", concurrency=2, batch_size=64)
    embedded = pq.read_table(vectors[0]).to_pylist()
    assert [r["embedding"] for r in embedded] == duet.ray.sequential(second, MODEL, "embed")

    # Resumed: a finished file is skipped (not rewritten); a missing one is made again.
    before = done[1].stat().st_mtime_ns
    done[0].unlink()
    again = duet.ray.process_files([jsonl, parquet], out, MODEL, "summarize", concurrency=2, batch_size=100, params=SUMMARY)
    assert done[1].stat().st_mtime_ns == before
    assert [json.loads(line)["summary"] for line in again[0].read_text().splitlines()] == expected[:500]
    assert not list(out.glob(".*partial*")), "no partial file is left"

    with pytest.raises(Exception, match="no column"):
        duet.ray.process_file(parquet, tmp_path / "bad", MODEL, "summarize", column="body", params=SUMMARY)
    assert not (tmp_path / "bad" / "part-1.parquet").exists(), "a failed file is not marked done"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, path, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read().decode()
    conn.close()
    return response.status, data


def test_a_serve_deployment_answers_as_the_model_does(cluster):
    from ray import serve  # noqa: PLC0415

    from serve_app import build  # noqa: PLC0415

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build(MODEL, autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8}),
                  name="duet", route_prefix="/duet")
        model = duet.Model(MODEL)
        text = "translate English to German: Hello."
        want = model.generate(text, max_new_tokens=12)

        status, body = post(port, "/duet/generate", {"inputs": text, "parameters": {"max_new_tokens": 12}})
        assert status == 200, body
        assert json.loads(body)["generated_text"] == want.text

        status, body = post(port, "/duet/generate_stream", {"inputs": text, "parameters": {"max_new_tokens": 12}})
        assert status == 200, body
        events = [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data:")]
        assert "".join(e["token"]["text"] for e in events[:-1]) == want.text == events[-1]["generated_text"]

        status, body = post(port, "/duet/summarize", {"inputs": rows(1, 0)[0], "parameters": SUMMARY})
        assert status == 200, body
        assert json.loads(body)["summary_text"] == model.summarize(rows(1, 0)[0], **SUMMARY).text

        status, body = post(port, "/duet/embed", {"inputs": ["a text editor", "an image viewer"]})
        assert status == 200, body
        assert json.loads(body) == [list(map(float, v)) for v in model.embed(["a text editor", "an image viewer"], as_numpy=False)]

        status, body = post(port, "/duet/generate", {"inputs": text, "parameters": {"num_beams": 0}})
        assert status == 400 and "num_beams" in json.loads(body)["error"], body
    finally:
        serve.shutdown()
