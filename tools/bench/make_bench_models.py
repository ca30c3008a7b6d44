#!/usr/bin/env python3
"""Build the benchmark models of `make bench` from nothing (no download).

    python tools/bench/make_bench_models.py OUT_DIR [--force] [--variants fp32,fp32-opt,int8,int4]

OUT_DIR receives:
    pt/          t5-small architecture (60M parameters) with random weights, PyTorch checkpoint +
                 tokenizer.json (a Unigram tokenizer over 32100 synthetic pieces, T5 layout)
    fp32/        tools/export_model.py export (merged + split decoders)
    fp32-opt/    fp32 with --optimize (ONNX Runtime transformer fusions)
    fp32-fused/  fp32 with --fuse (self-attention in MultiHeadAttention, packed Q/K/V)
    fp32-inplace/  fp32 with --in-place-cache (the fused attention appending its cache in place)
    int8/        fp32 with --quantize int8 --block-size 32 (MatMulNBits, weight-only, asymmetric,
                 accuracy_level 4 = int8 activations: export_model.py's defaults)
    int8-dynenc/ int8 with the encoder quantized dynamically (--encoder-quantize dynamic: MatMulInteger,
                 integer GEMMs over batch x tokens rows)
    int8-inplace/, int8-dynenc-inplace/  int8 and int8-dynenc with --in-place-cache
    int8-dyn-inplace/  every graph quantized dynamically (--encoder-quantize dynamic --decoder-quantize
                 dynamic: MatMulInteger, the LM head included), with --in-place-cache
    int4/        fp32 with --quantize int4 --block-size 32
    ct2-fp32/    CTranslate2 conversion of pt/ (float32)
    ct2-int8/    CTranslate2 conversion of pt/ (--quantization int8)
    fp32-rowcache/  the fp32 export with a cross-attention cache row per beam (--no-share-cross-cache),
                 what exports were before tools/share_cross_cache.py: the benchmark's before/after
    input.txt    the benchmark input: 127 words, one token each, 128 tokens with </s>
    input-512.txt, input-2048.txt   longer inputs of the same kind (511 and 2047 words)
Each ONNX variant dir holds duet_export.json (see tools/export_model.py). A step whose output is
complete is skipped unless --force (or something it derives from was rebuilt). About 3 minutes
on two cores.
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent.parent
INPUT_TOKENS = 128  # with </s>
LONG_INPUTS = (512, 2048)  # input-N.txt, N tokens with </s>: the summarization shape, the cost growth
VARIANTS = {  # name -> export_model.py arguments, applied to the fp32 export (fp32-rowcache: to pt/)
    "fp32": [],
    "fp32-opt": ["--optimize"],
    "fp32-fused": ["--fuse"],
    "fp32-inplace": ["--in-place-cache"],
    "int8": ["--quantize", "int8", "--block-size", "32"],
    "int8-dynenc": ["--quantize", "int8", "--block-size", "32", "--encoder-quantize", "dynamic"],
    "int8-inplace": ["--quantize", "int8", "--block-size", "32", "--in-place-cache"],
    "int8-dynenc-inplace": ["--quantize", "int8", "--block-size", "32", "--encoder-quantize", "dynamic",
                            "--in-place-cache"],
    "int8-dyn-inplace": ["--quantize", "int8", "--encoder-quantize", "dynamic", "--decoder-quantize", "dynamic",
                         "--in-place-cache"],
    "int4": ["--quantize", "int4", "--block-size", "32"],
    "fp32-rowcache": ["--no-share-cross-cache"],
}
FROM_PT = {"fp32", "fp32-rowcache"}
N_EXTRA = 100  # <extra_id_N>, as in T5
N_PIECES = 32100
CHARS = "abcdefghijklmnopqrstuvwxyz"
FFN_OUT_SCALE = 8.0


def synthetic_words(n):
    """n distinct pronounceable words (2-syllable first, then 3-syllable), deterministic order."""
    syl = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words = [a + b for a in syl for b in syl]
    words += [a + b + c for a in syl for b in syl for c in syl][: max(0, n - len(words))]
    random.Random(0).shuffle(words)
    return words[:n]


def build_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    chars = ["▁"] + list(CHARS)
    words = synthetic_words(N_PIECES - N_EXTRA - len(specials) - len(chars))
    extra = [f"<extra_id_{i}>" for i in reversed(range(N_EXTRA))]  # ids 32000..32099, like t5-small
    vocab = [(p, 0.0) for p in specials] + [(c, -20.0) for c in chars] + [("▁" + w, -10.0) for w in words]
    vocab += [(p, 0.0) for p in extra]
    assert len(vocab) == N_PIECES
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.Lowercase(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    tok.add_special_tokens(specials + extra)
    fast = T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                           extra_ids=0, additional_special_tokens=extra, model_max_length=512,
                           clean_up_tokenization_spaces=False)
    return fast, words


def build_pt(out):
    import torch
    from transformers import GenerationConfig, T5Config, T5ForConditionalGeneration

    tok, words = build_tokenizer()
    torch.manual_seed(0)
    cfg = T5Config(  # t5-small
        vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6, num_heads=8,
        relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="relu",
        tie_word_embeddings=True, initializer_factor=1.0, dropout_rate=0.1, layer_norm_epsilon=1e-6,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, n_positions=512,
        architectures=["T5ForConditionalGeneration"])
    model = T5ForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        # With T5's initialization and tied embeddings the input embedding dominates the residual stream
        # and greedy decoding repeats the start token forever, so any quantization "agrees". Larger FFN
        # outputs make the next token depend on the context (a few distinct tokens per 64, then repeats).
        for name, p in model.named_parameters():
            if name.endswith("DenseReluDense.wo.weight"):
                p.mul_(FFN_OUT_SCALE)
    gen = GenerationConfig(decoder_start_token_id=0, eos_token_id=1, pad_token_id=0)
    text = " ".join(random.Random(1).sample(words, INPUT_TOKENS - 1))
    ids = tok(text).input_ids
    assert len(ids) == INPUT_TOKENS and ids[-1] == 1 and 2 not in ids, len(ids)
    assert tok.decode(ids, skip_special_tokens=True) == text
    with torch.no_grad():  # random weights must stay finite and give a clear argmax
        x = torch.tensor([ids])
        logits = model(input_ids=x, decoder_input_ids=torch.zeros((1, 8), dtype=torch.long)).logits
        assert torch.isfinite(logits).all()
        top2 = logits.topk(2, dim=-1).values
        margin = ((top2[..., 0] - top2[..., 1]) / logits.std(-1)).min().item()
    model.save_pretrained(out)
    gen.save_pretrained(out)
    tok.save_pretrained(out)
    assert (out / "tokenizer.json").exists()
    return text, margin


def long_input(pt, tokens):
    """`tokens - 1` distinct synthetic words (one token each) and </s>, checked with pt/'s tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(pt)
    _, words = build_tokenizer()
    text = " ".join(random.Random(tokens).sample(words, tokens - 1))
    ids = tok(text).input_ids
    assert len(ids) == tokens and ids[-1] == 1 and 2 not in ids, len(ids)
    return text


def run(cmd, log):
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    t = time.perf_counter()
    subprocess.run([str(c) for c in cmd], check=True)
    log.append((" ".join(str(c) for c in cmd), time.perf_counter() - t))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", metavar="OUT_DIR")
    ap.add_argument("--force", action="store_true", help="rebuild every step")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="ONNX variants to build (default: all)")
    ap.add_argument("--no-ct2", action="store_true", help="skip the CTranslate2 conversions")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    py, log, t0 = sys.executable, [], time.perf_counter()

    pt = out / "pt"
    if args.force or not (pt / "model.safetensors").exists() or not (out / "input.txt").exists():
        shutil.rmtree(pt, ignore_errors=True)
        pt.mkdir()
        t = time.perf_counter()
        text, margin = build_pt(pt)
        (out / "input.txt").write_text(text + "\n")
        log.append(("build pt/ (random t5-small) + input.txt", time.perf_counter() - t))
        args.force = True  # everything below derives from pt/
        print(f"pt/: t5-small architecture, random weights; smallest top-1/top-2 logit margin {margin:.3g} std")

    for name in args.variants.split(","):
        dest = out / name
        if not args.force and (dest / "duet_export.json").exists():
            continue
        shutil.rmtree(dest, ignore_errors=True)
        src = pt if name in FROM_PT else out / "fp32"
        run([py, TOOLS / "export_model.py", src, dest, *VARIANTS[name]], log)
        if name == "fp32":
            args.force = True  # the other variants derive from fp32/

    for n in LONG_INPUTS:
        path = out / f"input-{n}.txt"
        if args.force or not path.exists():
            path.write_text(long_input(pt, n) + "\n")

    if not args.no_ct2:
        for name, extra in (("ct2-fp32", []), ("ct2-int8", ["--quantization", "int8"])):
            dest = out / name
            if not args.force and (dest / "model.bin").exists():
                continue
            shutil.rmtree(dest, ignore_errors=True)
            run([py, "-m", "ctranslate2.converters.transformers", "--model", pt, "--output_dir", dest, *extra], log)

    (out / "BUILD.txt").write_text("".join(f"{s:8.1f}s  {c}\n" for c, s in log))
    print(f"{out}: built in {time.perf_counter() - t0:.0f}s")
    for c, s in log:
        print(f"  {s:7.1f}s  {c}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
