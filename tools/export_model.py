#!/usr/bin/env python3
"""Export a Hugging Face encoder-decoder model (T5, BART, Marian, ...) to the ONNX layout duet loads.

    python tools/export_model.py MODEL_ID_OR_DIR OUT [--opset 18] [--no-merged]
                                 [--fuse] [--in-place-cache] [--optimize] [--quantize int8|int4 [--block-size 32]]
                                 [--encoder-quantize nbits|dynamic] [--decoder-quantize nbits|dynamic]

MODEL_ID_OR_DIR is a hub id (needs network), a local checkpoint directory, or an earlier export made
by this script (then its graphs are copied and only --optimize/--quantize are applied). OUT receives,
from one Optimum export (task text2text-generation-with-past):

    encoder_model.onnx             input_ids, attention_mask -> last_hidden_state
    decoder_model.onnx             first step: also takes encoder_hidden_states
    decoder_with_past_model.onnx   later steps: takes past_key_values.*
    decoder_model_merged.onnx      both decoders behind one If on use_cache_branch (skip: --no-merged)
    config.json, generation_config.json, tokenizer.json (+ whatever tokenizer files Optimum saved)
    duet_export.json               manifest: source, optimized, quantization, token_agreement, versions

Every export's encoder also returns the decoder's cross-attention cache (checked numerically against
decoder_model.onnx), so duet can run decoder_with_past_model.onnx alone for every step; that decoder
takes a self-attention mask (tools/decoder_mask.py) and lets the beams of one input share one row of
the cross-attention cache (tools/share_cross_cache.py; --no-share-cross-cache to keep a row per beam);
weights go to <graph>_data files beside the graphs unless --single-file.

--fuse rewrites the with-past decoder's self-attention as ONNX Runtime's MultiHeadAttention with one
packed Q/K/V projection (tools/fuse_attention.py), checked against the unfused graph.
--in-place-cache (implies --fuse) then makes that attention GroupQueryAttention appending the
self-attention cache in place: buffers with room to grow instead of a Concat copying the whole cache
per layer and step (tools/in_place_cache.py; checked against the fused graph). The with-past decoder
then takes `past_sequence_length`, and duet binds each present to its past.
--encoder-quantize dynamic (with --quantize int8) quantizes the encoder with ONNX Runtime's dynamic
quantization instead (MatMulInteger, integer GEMMs over its batch x tokens rows); --decoder-quantize
dynamic does the same for the decoders (the tied LM head included): integer GEMMs over the step's rows,
faster than MatMulNBits at every batch on a CPU without VNNI (bench/RESULTS.md), coarser activations.
--optimize applies ONNX Runtime's transformer fusions (t5/bart) to each split graph, keeping a graph
unchanged where they fail or move an output by more than 1e-3. --quantize makes the MatMul weights
(a tied LM head included) blockwise int8/int4, asymmetric unless --symmetric (MatMulNBits,
weight-only; activations int8 at --accuracy-level 4). --dtype fp16|bf16 converts to half precision
for GPUs. The merged decoder is then re-made from the transformed pair, and greedy generation (64
new tokens, 8 sample inputs, merged, split and with-past decoders) is compared with the fp32 export:
token_agreement = tokens before the first divergence / tokens (the strictest of the layouts);
verification.decoders.teacher_forced_agreement = argmax agreement at every position when both are
fed the fp32 sequence.

If the model only has a slow (sentencepiece) tokenizer, tokenizer.json is made with transformers'
slow->fast conversion. Marian has none in transformers: this script converts it itself (source
side for encoding, the shared vocabulary for decoding; see marian_tokenizer_json).
Needs the pins in tools/requirements.txt.
"""
import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import export_lib as lib
from export_lib import MERGED, SPLIT


def marian_tokenizer_json(tok):
    """tokenizer.json for a MarianTokenizer: source.spm segmentation with vocab.json ids, as the slow
    tokenizer encodes, and vocab.json pieces for decoding (target side).

    Pieces of vocab.json that source.spm lacks (target-only) must decode but never match input: they
    get a private-use prefix that the normalizer strips from input and the decoder strips from output.
    Where it differs from the slow tokenizer: a run of characters unknown to source.spm is always
    <unk> (slow looks the run's text up in vocab.json, so a lone character that only target.spm knows
    gets its id); a >>lang<< code is matched anywhere (slow: only at the start); a source.spm piece
    missing from vocab.json (slow: <unk>; a warning is printed).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors
    from transformers.convert_slow_tokenizer import SpmConverter

    if tok.separate_vocabs:
        raise SystemExit("Marian with separate source/target vocabularies cannot be one tokenizer.json")
    vocab = [t for t, _ in sorted(tok.encoder.items(), key=lambda kv: kv[1])]
    assert [tok.encoder[t] for t in vocab] == list(range(len(vocab))), "vocab.json ids are not 0..n-1"
    hide = "\ue000"
    keep = set(tok.all_special_tokens) | set(tok.supported_language_codes)

    class MarianConverter(SpmConverter):
        def tokenizer(self, proto):
            if proto.trainer_spec.model_type != 1:
                raise SystemExit("Marian source.spm is not a Unigram model")
            scores = {p.piece: p.score for p in proto.pieces}
            missing = [p.piece for p in proto.pieces if p.type == 1 and p.piece not in tok.encoder]
            if missing:
                print(f"warning: {len(missing)} source.spm pieces are not in vocab.json; the slow tokenizer maps "
                      f"them to <unk>, tokenizer.json segments around them: {missing[:10]}", file=sys.stderr)
            low = min(scores.values())  # keeps the <unk> penalty (lowest score - 10) as in sentencepiece
            pieces = [(t, scores.get(t, low)) if t in scores or t in keep else (hide + t, low) for t in vocab]
            return Tokenizer(models.Unigram(pieces, unk_id=tok.encoder[tok.unk_token], byte_fallback=False))

        def normalizer(self, proto):
            return normalizers.Sequence([normalizers.Replace(hide, ""), super().normalizer(proto)])

        def decoder(self, replacement, add_prefix_space):
            return decoders.Sequence([decoders.Replace(hide, ""), super().decoder(replacement, add_prefix_space)])

        def post_processor(self):
            return processors.TemplateProcessing(single="$A </s>", pair="$A $B </s>",
                                                 special_tokens=[("</s>", tok.eos_token_id)])

    tok.vocab_file = tok.spm_files[0]
    converted = MarianConverter(tok).converted()
    converted.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in tok.all_special_tokens])
    converted.add_tokens([AddedToken(t, normalized=False, special=False) for t in tok.supported_language_codes])
    return converted


def write_tokenizer_json(model, out):
    """Returns how tokenizer.json came about."""
    from transformers import AutoTokenizer, ByT5Tokenizer, MarianTokenizer

    if (out / "tokenizer.json").exists():
        if Path(model).is_dir() and not (Path(model) / "tokenizer.json").exists():
            return "saved by Optimum, converted from the slow tokenizer by transformers"
        return "saved by Optimum"
    tok = AutoTokenizer.from_pretrained(model)  # use_fast: converts sentencepiece when a converter exists
    if tok.is_fast:
        tok.backend_tokenizer.save(str(out / "tokenizer.json"))
        return f"converted from the slow tokenizer by transformers ({type(tok).__name__})"
    if isinstance(tok, MarianTokenizer):
        marian_tokenizer_json(tok).save(str(out / "tokenizer.json"))
        return "converted from MarianTokenizer by this script (see marian_tokenizer_json)"
    if isinstance(tok, ByT5Tokenizer):
        tok.save_pretrained(out)  # duet reads ByT5's bytes and added tokens from tokenizer_config.json
        return "none: ByT5 tokenizes UTF-8 bytes (tokenizer_config.json, read by duet)"
    raise SystemExit(f"cannot make tokenizer.json: transformers has no fast conversion for {type(tok).__name__}")


def add_decoder_mask(out):
    """The with-past decoder takes a self-attention mask (tools/decoder_mask.py), so duet's scheduler
    batches rows at different positions; kept only when the numeric check passes."""
    import decoder_mask

    candidate = out / "decoder_with_past_masked.onnx"
    note = decoder_mask.add_mask(out, candidate)
    if not candidate.exists():
        return note
    try:
        note += "; " + decoder_mask.check(out, candidate)
    except SystemExit as e:
        candidate.unlink()
        return f"mask skipped: {e}"
    os.replace(candidate, out / lib.DECODER_PAST)
    return note


def with_past_transform(out, module, not_done):
    """`module.apply(out)` on the with-past decoder (one of the tools/ graph rewrites), kept only when its
    numeric check passes; otherwise `not_done` and why."""
    import importlib

    if not (out / lib.DECODER_PAST).exists():
        return f"{not_done}: no with-past decoder"
    try:
        return importlib.import_module(module).apply(out)
    except SystemExit as e:
        return f"{not_done}: {e}"


def share_cross_cache(out):
    """The with-past decoder reads one cross-attention cache row for all beams of an input."""
    return with_past_transform(out, "share_cross_cache", "not shared")


def fuse_attention(out):
    """The with-past decoder's self-attention in MultiHeadAttention."""
    return with_past_transform(out, "fuse_attention", "not fused")


def in_place_cache(out):
    """The fused with-past decoder appending its self-attention cache in place."""
    return with_past_transform(out, "in_place_cache", "not in place")


def trace_shapes(config):
    """Input shapes for the trace where the default ones would fix a length into the graphs.

    LongT5's local and transient-global attention pad the input to a multiple of the block length
    under an `if` that tracing resolves once: traced at a multiple (Optimum's 16 tokens against a
    block of 8 or 16), the graph never pads and fails on other lengths. A length that is a multiple of
    neither the block nor the global block keeps both paddings in the graph."""
    if config.model_type != "longt5":
        return {}
    block, global_block = config.local_radius + 1, getattr(config, "global_block_size", 1)
    length = next(n for n in range(17, 17 + block * global_block + 1)
                  if (block < 2 or n % block) and (global_block < 2 or n % global_block))
    return {"sequence_length": length}


def export(model, out, opset=18, merged=True, cross_cache=True):
    """Exports `model` into directory `out`; returns {file name: note} for the printout."""
    from optimum.exporters.onnx import main_export
    from transformers import AutoConfig, GenerationConfig

    out = Path(out)
    # Post-processing merges the two decoders into decoder_model_merged.onnx and keeps the split pair.
    main_export(model, output=out, task="text2text-generation-with-past", opset=opset,
                **trace_shapes(AutoConfig.from_pretrained(model)))
    if not merged:
        (out / MERGED).unlink(missing_ok=True)
    for f in SPLIT + ([MERGED] if merged else []):
        if not (out / f).exists():
            raise SystemExit(f"Optimum did not write {f}")
    if not (out / "config.json").exists():
        AutoConfig.from_pretrained(model).save_pretrained(out)
    if not (out / "generation_config.json").exists():
        try:
            gen = GenerationConfig.from_pretrained(model)
        except OSError:
            gen = GenerationConfig.from_model_config(AutoConfig.from_pretrained(model))
        gen.save_pretrained(out)
    notes = {"tokenizer.json": write_tokenizer_json(model, out)}
    if cross_cache:
        notes[lib.ENCODER] = lib.add_cross_cache_to_encoder(out)
        notes[lib.DECODER_PAST] = add_decoder_mask(out)
    return notes


def main():
    if os.environ.get("PYTHONHASHSEED") != "0":  # Optimum's decoder merge is only reproducible with it
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", metavar="MODEL_ID_OR_DIR", help="hub id or local checkpoint directory")
    ap.add_argument("out", metavar="OUT", help="output directory")
    ap.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    ap.add_argument("--no-merged", action="store_true", help="do not keep decoder_model_merged.onnx")
    ap.add_argument("--optimize", action="store_true", help="ONNX Runtime transformer fusions (t5, bart)")
    ap.add_argument("--fuse", action="store_true",
                    help="the with-past decoder's self-attention as ONNX Runtime's MultiHeadAttention with packed Q/K/V "
                         "(tools/fuse_attention.py; float32, checked against the unfused graph)")
    ap.add_argument("--in-place-cache", action="store_true",
                    help="with --fuse (implied): the with-past decoder appends its self-attention cache in place "
                         "(GroupQueryAttention over buffers duet grows; tools/in_place_cache.py, checked)")
    ap.add_argument("--quantize", choices=["int8", "int4"], help="weight-only MatMulNBits quantization")
    ap.add_argument("--block-size", type=int, default=32, help="quantization block size (default 32)")
    ap.add_argument("--symmetric", action="store_true",
                    help="symmetric blocks (no zero points): ~5%% faster at 8 bits, ~5%% more logit error on the "
                         "bench model (default: asymmetric, ONNX Runtime's quantizer default)")
    ap.add_argument("--accuracy-level", type=int, choices=[0, 1, 2, 3, 4], default=4,
                    help="MatMulNBits accuracy_level: 4 (default) = int8 activations, ONNX Runtime's fast CPU "
                         "kernels; 0 = float32 compute (8 bits: ~10x slower than float32 with onnxruntime 1.31)")
    ap.add_argument("--encoder-quantize", choices=["nbits", "dynamic"], default="nbits",
                    help="with --quantize int8, how the encoder is quantized: nbits (default) = as the decoders; "
                         "dynamic = ONNX Runtime's dynamic quantization (MatMulInteger: int8 weights per channel, "
                         "uint8 activations per tensor), integer GEMMs over batch x tokens rows: a 2-2.6x faster "
                         "encoder on an AVX-512 VNNI CPU, at lower agreement with fp32 (bench/RESULTS.md)")
    ap.add_argument("--decoder-quantize", choices=["nbits", "dynamic"], default="nbits",
                    help="with --quantize int8, how the decoders are quantized: nbits (default) = MatMulNBits; dynamic = "
                         "ONNX Runtime's dynamic quantization (MatMulInteger, the LM head included): integer GEMMs over "
                         "the step's rows, faster at every batch on an AVX2 CPU, coarser activations (bench/RESULTS.md)")
    ap.add_argument("--no-share-cross-cache", action="store_true",
                    help="keep one cross-attention cache row per decoder row (default: the beams of one input share "
                         "one, tools/share_cross_cache.py)")
    ap.add_argument("--single-file", action="store_true",
                    help="keep each graph's weights inside it (default: beside it in <graph>_data, which ONNX "
                         "Runtime maps from the file: less memory)")
    ap.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32",
                    help="weights and compute precision for GPUs (default fp32). fp16 keeps T5's overflowing ops "
                         "(norms, residual adds, feed-forward outputs) in float32; bf16 has float32's range. "
                         "Caches and hidden states take the type, logits stay float32")
    args = ap.parse_args()
    args.fuse = args.fuse or args.in_place_cache
    if args.dtype != "fp32" and args.fuse:
        ap.error("--fuse is for float32 graphs (the CPU kernels it is checked with)")
    if args.dtype != "fp32" and args.quantize:
        ap.error("--dtype fp16/bf16 and --quantize do not combine: MatMulNBits here is the CPU path, half precision "
                 "the GPU one")
    if "dynamic" in (args.encoder_quantize, args.decoder_quantize) and args.quantize != "int8":
        ap.error("--encoder-quantize/--decoder-quantize dynamic go with --quantize int8 (MatMulInteger has no 4-bit "
                 "form)")
    out, src = Path(args.out), Path(args.model)
    source, base = args.model, None
    if src.is_dir() and (src / SPLIT[0]).exists():  # an earlier export: transform a copy of it
        lib.copy_export(src, out)
        if args.no_merged:
            (out / MERGED).unlink(missing_ok=True)
        old = src / "duet_export.json"
        source = json.loads(old.read_text())["source"] if old.exists() else str(src)
        base, notes = src, {lib.ENCODER: lib.add_cross_cache_to_encoder(out)}
    else:
        notes = export(args.model, args.out, args.opset, merged=not args.no_merged)
    quant, graphs, verified = None, {}, None
    if args.fuse:
        graphs["fuse"] = {lib.DECODER_PAST: fuse_attention(out)}
    if args.optimize or args.quantize or args.dtype != "fp32":
        ref = base or lib.reference_copy(out)
        config = json.loads((out / "config.json").read_text())
        if args.optimize:
            graphs["optimize"] = lib.optimize(out, config)
        if args.quantize:
            bits = {"int8": 8, "int4": 4}[args.quantize]
            dynamic = {"encoder": args.encoder_quantize == "dynamic", "decoders": args.decoder_quantize == "dynamic"}
            dynamic_graphs = [f for f in SPLIT if dynamic["encoder" if f == lib.ENCODER else "decoders"]]
            nbits_graphs = [f for f in SPLIT if f not in dynamic_graphs]
            quant = {"method": "MatMulNBits", "bits": bits, "block_size": args.block_size, "symmetric": args.symmetric,
                     "accuracy_level": args.accuracy_level} if nbits_graphs else {"method": "dynamic", "bits": 8}
            graphs["quantize"] = lib.quantize(out, bits, args.block_size, args.accuracy_level, args.symmetric,
                                              nbits_graphs)
            for part in (k for k, on in dynamic.items() if on):
                quant[part] = {"method": "dynamic", "op": "MatMulInteger", "weights": "int8 per output channel",
                               "activations": "uint8 per tensor, at run time"}
            for f in dynamic_graphs:
                graphs["quantize"][f] = lib.quantize_dynamic_int8(out, f)
        if args.dtype != "fp32":
            graphs["precision"] = lib.convert_precision(out, args.dtype, config)
        if (out / MERGED).exists():
            lib.remerge(out)
        verified = lib.verify(out, ref)
        if base is None:
            shutil.rmtree(ref)
    if not args.no_share_cross_cache:
        graphs["share_cross_cache"] = {lib.DECODER_PAST: share_cross_cache(out)}
    if args.in_place_cache:
        graphs["in_place_cache"] = {lib.DECODER_PAST: in_place_cache(out)}
    if not args.single_file:
        graphs["external_data"] = lib.external_data(out)
    lib.drop_unused_data_files(out)
    manifest = lib.write_manifest(out, source, args.optimize, quant, verified, graphs, args.dtype)
    print(f"wrote {args.out}:")
    for p in sorted(Path(args.out).iterdir()):
        print(f"  {p.stat().st_size:>12}  {p.name}" + (f"  ({notes[p.name]})" if p.name in notes else ""))
    cfg = json.loads((Path(args.out) / "config.json").read_text())
    print(f"  model_type={cfg.get('model_type')} decoder_start_token_id={cfg.get('decoder_start_token_id')}")
    for step, per_graph in graphs.items():
        for f, note in per_graph.items():
            print(f"  {step} {f}: {note}")
    if verified and verified[1].get("skipped"):
        print(f"  token agreement with fp32: not measured: {verified[1]['skipped']}")
    elif verified:
        print(f"  token agreement with fp32 over {manifest['sample_inputs']} inputs: {manifest['token_agreement']} "
              + ", ".join(f"{k} {v['token_agreement']} ({v['identical_sequences']} identical)"
                          for k, v in manifest["verification"]["decoders"].items())
              + f"; teacher-forced {manifest['verification']['teacher_forced_agreement']}")


if __name__ == "__main__":
    main()
