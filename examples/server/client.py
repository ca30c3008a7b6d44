#!/usr/bin/env python3
"""A client of `duet serve`, with Python's standard library only (no client package needed).

    python3 examples/server/client.py target/release/duet models/debian-summarizer

Starts `duet serve` on a free loopback port with the model, then: summarizes a real package
description, streams a generation piece by piece (server-sent events) and checks the pieces add
up to what /generate returns, embeds descriptions and ranks them for a query, reranks them with
the decoder, hangs up on a stream (the server cancels its generation), reads /metrics, and stops
the server with SIGTERM. Every step checks its answer; any failure exits non-zero.
"""

import http.client
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "debian-packages.txt"


def start(duet, model):
    server = subprocess.Popen([duet, "serve", "--model", model, "--port", "0"], stderr=subprocess.PIPE, text=True)
    line = server.stderr.readline()
    if "listening on http://" not in line:
        server.kill()
        sys.exit(f"duet serve did not start: {line}{server.stderr.read()}")
    host, port = line.split("http://")[1].split()[0].split(":")
    return server, host, int(port)


def call(host, port, method, path, body=None):
    conn = http.client.HTTPConnection(host, port, timeout=120)
    conn.request(method, path, body=None if body is None else json.dumps(body), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read().decode()
    conn.close()
    return response.status, (json.loads(data) if data.startswith(("{", "[")) else data)


def stream(host, port, body, stop_after=None):
    """The events' payloads; with stop_after, hangs up after that many."""
    conn = http.client.HTTPConnection(host, port, timeout=120)
    conn.request("POST", "/generate_stream", body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200, response.read()
    events = []
    while True:
        line = response.readline().decode()
        if not line:
            break
        if line.startswith("data:"):
            events.append(json.loads(line[5:]))
            if stop_after is not None and len(events) >= stop_after:
                break
    conn.close()
    return events


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def metric(host, port, name):
    _, text = call(host, port, "GET", "/metrics")
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


def main():
    duet, model = sys.argv[1], sys.argv[2]
    packages = dict(line.split(": ", 1) for line in DATA.read_text().splitlines() if ": " in line)
    server, host, port = start(duet, model)
    try:
        status, health = call(host, port, "GET", "/health")
        assert (status, health) == (200, {"status": "ok"}), health
        status, info = call(host, port, "GET", "/info")
        print(f"serving {info['architecture']} model {info['model_dir']} (duet {info['server']['duet_version']})")

        description = packages["ncdu"]
        status, summary = call(host, port, "POST", "/summarize", {"inputs": description})
        assert status == 200, summary
        print(f"summarize ncdu: {summary['summary_text']!r}")
        assert summary["summary_text"].strip()

            # Greedy, so that pieces come as they are decided (beam search, this model's default,
        # decides its text at the end).
        request = {"inputs": packages["curl"], "parameters": {"max_new_tokens": 24, "num_beams": 1}}
        status, whole = call(host, port, "POST", "/generate", request)
        assert status == 200, whole
        events = stream(host, port, request)
        pieces = "".join(e["token"]["text"] for e in events)
        print(f"generate_stream curl: {len(events)} events: {pieces!r}")
        assert pieces == whole["generated_text"] == events[-1]["generated_text"], (pieces, whole)

        names = ["vim", "ncdu", "curl", "git"]
        status, vectors = call(host, port, "POST", "/embed", {"inputs": [packages[n] for n in names], "truncate": True})
        assert status == 200 and len(vectors) == len(names), vectors
        query = "see which folders use the most disk space"
        _, [q] = call(host, port, "POST", "/embed", {"inputs": query})
        best = max(range(len(names)), key=lambda i: cosine(q, vectors[i]))
        print(f"embed: closest to {query!r}: {names[best]}")
        assert names[best] == "ncdu"

        status, ranked = call(host, port, "POST", "/rerank", {"query": "disk usage viewer", "texts": [packages[n] for n in names],
                                                           "truncate": True})
        assert status == 200, ranked
        print("rerank 'disk usage viewer': " + ", ".join(f"{names[r['index']]} {r['score']:.3g}" for r in ranked))
        assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)

        status, error = call(host, port, "POST", "/generate", {"inputs": "x", "parameters": {"num_beams": 0}})
        assert status == 400 and error["status"] == "DUET_STATUS_INVALID_PARAM", error
        print(f"bad params: {status} {error['error']}")

        long = {"inputs": packages["git"], "parameters": {"max_new_tokens": 400, "min_new_tokens": 400, "num_beams": 1}}
        stream(host, port, long, stop_after=2)
        deadline = time.time() + 30
        while metric(host, port, "duet_scheduler_running_requests") > 0:
            assert time.time() < deadline, "the stream's generation still runs after the client left"
            time.sleep(0.02)
        disconnects = metric(host, port, "duet_client_disconnects_total")
        assert disconnects == 1, disconnects
        print("hung up on a stream after 2 events: its generation was cancelled")
        print(f"tokens generated: {metric(host, port, 'duet_generated_tokens_total'):.0f}, "
              f"decoder steps: {metric(host, port, 'duet_decoder_steps_total'):.0f}")
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
    assert code == 0, f"duet serve exited with {code}"
    print("stopped cleanly")


if __name__ == "__main__":
    main()
