#!/usr/bin/env python3
"""The load test: `duet serve` on loopback under N concurrent clients, beside the same requests
through the Python binding in one process.

    python tools/bench/loadtest.py --duet target/release/duet --model models/debian-summarizer
        --lib target/release/libduet.so [--clients 8,32,128] [--seconds 20] [--out bench/RESULTS.md]

Each client sends requests back to back for a fixed time, cycling through a mix of real work on
Debian package descriptions (examples/data/debian-packages.txt): embed one description; generate
(greedy, 24 new tokens); generate_stream (the same, read to its last event); summarize one
description (the model's beam search, `summary_length=short`). The server runs with its defaults;
each client keeps one keep-alive connection. The binding's clients are threads calling
`Model.embed`, `generate`, `generator` (iterated to its end) and `summarize` on one model, whose
scheduler batches them as the server's does.

Reported per front end and client count: requests answered, requests/s, generated tokens/s (the
generate and stream requests' tokens), p50/p99 latency per kind, errors (any answer but 200), and
the serving process's RSS before and after. Then an overload run: a server with
`max_requests=8` under 64 clients, where generation beyond the queue must be answered 429 with a
reason and nothing else may fail. Writes the section between <!-- loadtest:start --> and
<!-- loadtest:end --> of --out.
"""
import argparse
import http.client
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- loadtest:start -->", "<!-- loadtest:end -->"
KINDS = ["embed", "generate", "generate_stream", "summarize"]
GENERATE = {"max_new_tokens": 24, "min_new_tokens": 24, "num_beams": 1}


def descriptions():
    lines = (ROOT / "examples/data/debian-packages.txt").read_text().splitlines()
    return [line.split(": ", 1)[1] for line in lines if ": " in line]


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Tally:
    """What the clients of one run saw."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latency = {k: [] for k in KINDS}
        self.tokens = 0
        self.errors = {}
        self.busy = 0

    def ok(self, kind, seconds, tokens=0):
        with self.lock:
            self.latency[kind].append(seconds)
            self.tokens += tokens

    def failed(self, kind, what):
        with self.lock:
            if what == 429:
                self.busy += 1
            else:
                key = f"{kind}: {what}"
                self.errors[key] = self.errors.get(key, 0) + 1


# --- the HTTP front end ---------------------------------------------------------------------

def start_server(duet, model, extra=()):
    server = subprocess.Popen([duet, "serve", "--model", model, "--port", "0", *extra], stderr=subprocess.PIPE, text=True)
    line = server.stderr.readline()
    if "listening on http://" not in line:
        server.kill()
        sys.exit(f"duet serve did not start: {line}")
    threading.Thread(target=server.stderr.read, daemon=True).start()
    host, port = line.split("http://")[1].split()[0].split(":")
    return server, host, int(port)


def http_client(host, port, texts, start_index, deadline, tally):
    conn = http.client.HTTPConnection(host, port, timeout=600)
    i = start_index
    while time.time() < deadline:
        kind = KINDS[i % len(KINDS)]
        text = texts[i % len(texts)]
        i += 1
        if kind == "embed":
            path, body = "/embed", {"inputs": [text], "truncate": True}
        elif kind == "summarize":
            path, body = "/summarize", {"inputs": text, "parameters": {"summary_length": "short", "truncate_input": True}}
        else:
            path, body = "/" + kind, {"inputs": text, "parameters": dict(GENERATE, details=True, truncate_input=True)}
        began = time.time()
        try:
            conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            if response.status != 200:
                tally.failed(kind, response.status)
                response.read()
                continue
            if kind == "generate_stream":
                last = None
                while True:
                    line = response.readline()
                    if not line:
                        break
                    if line.startswith(b"data:"):
                        last = json.loads(line[5:])
                if last is None or "error" in last:
                    tally.failed(kind, f"stream ended without an answer: {last}")
                    continue
                tally.ok(kind, time.time() - began, last["details"]["generated_tokens"])
            else:
                answer = json.loads(response.read())
                tokens = answer["details"]["generated_tokens"] if kind == "generate" else 0
                tally.ok(kind, time.time() - began, tokens)
        except (OSError, http.client.HTTPException, ValueError) as e:
            tally.failed(kind, type(e).__name__)
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=600)
    conn.close()


# --- the Python binding in one process --------------------------------------------------------

def binding_client(model, texts, start_index, deadline, tally, duet):
    i = start_index
    while time.time() < deadline:
        kind = KINDS[i % len(KINDS)]
        text = texts[i % len(texts)]
        i += 1
        began = time.time()
        try:
            if kind == "embed":
                model.embed([text], truncate_input=True)
                tally.ok(kind, time.time() - began)
            elif kind == "summarize":
                model.summarize(text, summary_length="short", truncate_input=True)
                tally.ok(kind, time.time() - began)
            elif kind == "generate":
                g = model.generate(text, truncate_input=True, **GENERATE)
                tally.ok(kind, time.time() - began, len(g.token_ids))
            else:
                gen = model.generator(text, truncate_input=True, **GENERATE)
                for _ in gen:
                    pass
                tally.ok(kind, time.time() - began, len(gen.result.token_ids))
        except duet.ModelBusy:
            tally.failed(kind, 429)
        except duet.Error as e:
            tally.failed(kind, type(e).__name__)


def run(clients, seconds, target):
    tally = Tally()
    deadline = time.time() + seconds
    began = time.time()
    threads = [threading.Thread(target=target, args=(c, deadline, tally)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally, time.time() - began


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def row(front, clients, tally, wall, rss_before, rss_after):
    answered = sum(len(v) for v in tally.latency.values())
    kinds = " · ".join(f"{k} {pct(tally.latency[k], 0.5) * 1e3:.0f} / {pct(tally.latency[k], 0.99) * 1e3:.0f}" for k in KINDS)
    errors = sum(tally.errors.values())
    return (f"| {front} | {clients} | {answered} | {answered / wall:.1f} | {tally.tokens / wall:.0f} | {kinds} | "
            f"{errors} | {tally.busy} | {rss_before:.0f} → {rss_after:.0f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duet", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--clients", default="8,32,128")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--soak-rounds", type=int, default=4, help="rounds of the server alone at the largest level, after the table")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="a model option, for the server and the binding alike (repeatable)")
    ap.add_argument("--out", default=str(ROOT / "bench/RESULTS.md"))
    args = ap.parse_args()
    options = dict(o.split("=", 1) for o in args.option)
    server_options = [a for k, v in options.items() for a in ("--option", f"{k}={v}")]
    levels = [int(c) for c in args.clients.split(",")]
    texts = descriptions()

    os.environ["DUET_LIBRARY"] = str(Path(args.lib).resolve())
    sys.path.insert(0, str(ROOT / "bindings/python"))
    import duet  # noqa: PLC0415 - after DUET_LIBRARY is set

    rows, failures = [], []
    server, host, port = start_server(args.duet, args.model, server_options)
    model = duet.Model(args.model, options=options or None)
    try:
        # Warm both (first runs allocate arenas); not measured.
        run(4, 3, lambda c, d, t: http_client(host, port, texts, c, d, t))
        run(4, 3, lambda c, d, t: binding_client(model, texts, c, d, t, duet))
        # The largest level runs twice: memory that grows with batch shapes (ONNX Runtime's arena
        # keeps its largest blocks) shows in the first run; the second shows whether it goes on.
        for clients, again in [(c, False) for c in levels] + [(levels[-1], True)]:
            for front in ("HTTP (duet serve)", "Python binding, one process"):
                pid = server.pid if front.startswith("HTTP") else os.getpid()
                before = rss_mib(pid)
                if front.startswith("HTTP"):
                    tally, wall = run(clients, args.seconds, lambda c, d, t: http_client(host, port, texts, c * 7, d, t))
                else:
                    tally, wall = run(clients, args.seconds, lambda c, d, t: binding_client(model, texts, c * 7, d, t, duet))
                after = rss_mib(pid)
                rows.append(row(front + (", again" if again else ""), clients, tally, wall, before, after))
                print(rows[-1], flush=True)
                if tally.errors or tally.busy:
                    failures.append(f"{front}, {clients} clients: errors {tally.errors}, 429s {tally.busy}")
        # A soak at the largest level, the server alone: its RSS after each round.
        soak = [rss_mib(server.pid)]
        for _ in range(args.soak_rounds):
            tally, _ = run(levels[-1], args.seconds, lambda c, d, t: http_client(host, port, texts, c * 7, d, t))
            soak.append(rss_mib(server.pid))
            if tally.errors or tally.busy:
                failures.append(f"soak: errors {tally.errors}, 429s {tally.busy}")
        print("soak RSS", [round(r) for r in soak], flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)

    over, host, port = start_server(args.duet, args.model, server_options + ["--option", "max_requests=8"])
    try:
        tally, wall = run(64, args.seconds / 2, lambda c, d, t: http_client(host, port, texts, c * 7, d, t))
        overload = row("HTTP, `max_requests=8`", 64, tally, wall, float("nan"), rss_mib(over.pid))
        print(overload, flush=True)
        if tally.errors or not tally.busy:
            failures.append(f"overload: errors {tally.errors}, 429s {tally.busy} (want only 429s)")
    finally:
        over.send_signal(signal.SIGTERM)
        over.wait(timeout=120)

    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "?")
    lines = [
        START,
        "## Load test: `duet serve` under concurrent clients, beside the Python binding (`make loadtest`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores ({cpu}, {platform.system()}), model "
        f"`{args.model}` (the bundled BART-shaped summarizer), {args.seconds:.0f} s per row, clients and server on the same "
        "2 cores. Each client sends back to back, cycling embed (one description) → generate (greedy, 24 tokens) → "
        "generate_stream (the same, to its last event) → summarize (beam search, `summary_length=short`); one model, "
        "its scheduler batching every generation. Latency columns are p50 / p99 in ms per kind. The largest level "
        "runs a second time (\"again\"), so that RSS growth from warming (the arena sized by the largest batches) "
        "and growth that goes on can be told apart.",
        "",
        "| front end | clients | answered | req/s | gen tok/s | p50 / p99 ms | errors | 429 | RSS MiB before → after |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        overload,
        "",
        f"Soak, the server alone at {levels[-1]} clients after the rows above, RSS after each {args.seconds:.0f} s round: "
        + " → ".join(f"{r:.0f}" for r in soak) + " MiB.",
        "",
        "Reading the table: `gen tok/s` counts the generate and stream requests' tokens only (summaries' beam rows are "
        "decoded in the same runs, uncounted). The server's embed requests wait for one of `--max-tasks` places (the "
        "cores), so their latency rises with load where the binding's threads embed ungated. RSS grows with the rows in "
        "flight (each row keeps its encoder output and cross-attention cache, and ONNX Runtime's arena keeps its largest "
        "blocks): the again rows and the soak show whether it goes on growing at a fixed load.",
        "",
        ("Every request below the queue limit was answered 200; in the overload row every refusal was a 429 "
         "with its reason and nothing else failed." if not failures else "**Failures:** " + "; ".join(failures)),
        END,
    ]
    section = "\n".join(lines)
    sys.path.insert(0, str(ROOT / "tools/bench"))
    from search_bench import write_section  # noqa: PLC0415 - the shared section writer
    write_section(args.out, section, START, END)
    print(section)
    if failures:
        sys.exit("load test failures: " + "; ".join(failures))


if __name__ == "__main__":
    main()
