#!/usr/bin/env python3
"""Build duet's test fixtures from nothing but the text in this file.

    python tools/make_fixtures.py [--keep-work DIR] [--no-verify]

Writes tests/fixtures/{t5-tiny,bart-tiny}/ (tokenizer, configs, the four Optimum ONNX graphs,
GRAPHS.txt), tests/fixtures/goldens.json (what `transformers` generates with the PyTorch models) and
tests/fixtures/search_goldens.json (mean-pooled encoder embeddings and rerank scores, PyTorch float32).
The models have random weights: their outputs are meaningless, but deterministic. Needs the pins in
tools/requirements.txt. Runs in about a minute on two CPU cores.
"""
import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if os.environ.get("PYTHONHASHSEED") != "0":  # Optimum's decoder merge is only reproducible with it
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    BartConfig,
    BartForConditionalGeneration,
    BartTokenizerFast,
    DynamicCache,
    EncoderDecoderCache,
    GenerationConfig,
    T5Config,
    T5ForConditionalGeneration,
    T5TokenizerFast,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
ONNX_FILES = ["encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx", "decoder_model_merged.onnx"]
META_FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]

# --------------------------------------------------------------------------------------------------
# Training text
# --------------------------------------------------------------------------------------------------
ENGLISH = """\
The quick brown fox jumps over the lazy dog.
A small cat sleeps on the warm windowsill every afternoon.
The city council approved a new budget for public libraries on Tuesday.
Scientists discovered a new species of frog in the rainforest.
Heavy rain is expected across the northern region this weekend.
The museum will reopen next month after a long renovation.
She walked to the market to buy fresh bread, cheese and apples.
Researchers say that regular exercise improves sleep and memory.
The train to the airport leaves every twenty minutes.
Our team won the championship after a dramatic final match.
He forgot his umbrella, so he waited under the bridge until the storm passed.
The company reported higher profits in the third quarter.
Children learn languages faster when they play with friends.
Please summarize the following article in two sentences.
Translate English to German: the house is wonderful.
The old lighthouse has guided ships safely for more than a century.
Farmers are worried about the long dry summer and the price of water.
The new bridge connects the two halves of the town across the river.
Engineers tested the battery under extreme cold and heat.
Tourists crowded the square to watch the fireworks at midnight.
The orchestra played a symphony that nobody had heard in decades.
A volunteer group planted three thousand trees along the highway.
The doctor recommended drinking more water and walking every day.
Students protested against the sudden increase in tuition fees.
The spacecraft sent back clear pictures of the distant moon.
It's not what you said, it's how you said it.
Don't count your chickens before they hatch.
We're going to the beach tomorrow if the weather is nice.
They've finished the report and sent it to the editor.
Why would anyone build a castle on such a tiny island?
The price of coffee rose by twelve percent last year.
In 1969, two astronauts walked on the surface of the moon.
The recipe calls for 2 cups of flour, 3 eggs and a pinch of salt.
My grandmother tells the best stories about her childhood village.
The software update fixes several bugs and improves battery life.
Wild horses ran across the valley as the sun went down.
The judge postponed the trial until the end of the month.
A strong earthquake shook the coastal towns early on Monday.
The library offers free classes in painting, music and programming.
The river flooded the fields, and the roads were closed for days.
"""

CHINESE = """\
今天天气很好，我们去公园散步吧。
我喜欢喝咖啡，也喜欢喝茶。
这个城市的地铁非常方便。
科学家在森林里发现了一种新的青蛙。
明天早上八点我们在学校门口见面。
他每天晚上都会读一个小时的书。
这家餐厅的饺子特别好吃。
春天来了，花园里开满了花。
请把这篇文章总结成两句话。
火车站离这里不远，走路十分钟就到了。
"""

EMOJI = """\
I love pizza 🍕 and coffee ☕ in the morning!
Happy birthday 🎉🎂 to my best friend.
The weather today: ☀️ then 🌧️ in the evening.
Great job team 👍 see you tomorrow 😀
"""

SUBJECTS = ["The teacher", "A farmer", "My neighbor", "The president", "Our cat", "The engineer", "A young girl",
            "The old man", "The scientist", "Every student", "The company", "The band", "A tourist", "The pilot"]
VERBS = ["found", "painted", "repaired", "visited", "described", "ignored", "carried", "cleaned", "borrowed",
         "studied", "sold", "opened", "watched", "measured", "remembered", "discovered"]
OBJECTS = ["the broken clock", "a wooden boat", "the blue house", "an ancient map", "the school garden",
           "a red bicycle", "the market square", "the mountain road", "a silver coin", "the empty theater",
           "the village church", "a letter from Paris", "the kitchen window", "the yellow train"]
TAILS = ["before lunch", "after the storm", "with great care", "for the first time", "near the river",
         "without any help", "in the morning", "last summer", "during the festival", "at night"]


def corpus():
    lines = [s for block in (ENGLISH, CHINESE, EMOJI) for s in block.splitlines() if s]
    rng = random.Random(20240611)
    for _ in range(400):
        lines.append(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}.")
    return lines


# --------------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------------
def t5_tokenizer(lines):
    """Unigram + Metaspace like a T5 sentencepiece model, plus <0xNN> byte fallback (ids 3..258)."""
    specials = ["<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=700, special_tokens=specials, unk_token="<unk>", max_piece_length=12)
    tok.train_from_iterator(lines, trainer)
    trained = json.loads(tok.to_str())["model"]["vocab"]
    assert [p for p, _ in trained[:3]] == specials
    # The trainer is not deterministic: its scores vary in the last bits, and the pieces it appends
    # last (scores spaced by 1e-4) are scored in hash order. Round, sort, and hand that tail its
    # scores in piece order.
    pieces = sorted(((p, round(s, 6)) for p, s in trained[3:]), key=lambda ps: (-ps[1], ps[0]))
    tail = len(pieces) - 1
    while tail > 0 and pieces[tail - 1][1] - pieces[tail][1] < 1e-4 + 2e-6:
        tail -= 1
    pieces[tail:] = zip(sorted(p for p, _ in pieces[tail:]), [s for _, s in pieces[tail:]])
    vocab = [(p, 0.0) for p in specials] + [(f"<0x{b:02X}>", 0.0) for b in range(256)] + pieces
    out = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=True))
    out.normalizer = tok.normalizer
    out.pre_tokenizer = tok.pre_tokenizer
    out.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="always")])
    out.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    out.add_special_tokens(specials)
    return T5TokenizerFast(tokenizer_object=out, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                           extra_ids=8, model_max_length=512, clean_up_tokenization_spaces=False)


def byte_level_bpe(lines, specials, vocab_size):
    """Byte-level BPE as RoBERTa's, `<s> text </s>` around the input; `specials` take ids 0.."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer)
    tok.post_processor = processors.RobertaProcessing(sep=("</s>", specials.index("</s>")),
                                                      cls=("<s>", specials.index("<s>")), add_prefix_space=False)
    return tok


def bart_tokenizer(lines):
    """Byte-level BPE like BART/RoBERTa: <s>=0 <pad>=1 </s>=2 <unk>=3 ... <mask>=last."""
    tok = byte_level_bpe(lines, ["<s>", "<pad>", "</s>", "<unk>"], 800)
    return BartTokenizerFast(tokenizer_object=tok, model_max_length=256, clean_up_tokenization_spaces=False)


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------
T5_TASKS = {
    "summarization": {"early_stopping": True, "length_penalty": 2.0, "max_length": 200, "min_length": 30,
                      "no_repeat_ngram_size": 3, "num_beams": 4, "prefix": "summarize: "},
    "translation_en_to_de": {"early_stopping": True, "max_length": 300, "num_beams": 4,
                             "prefix": "translate English to German: "},
}


def t5_model(vocab_size):
    torch.manual_seed(6)  # seeds picked for large top-1/top-2 margins over all cases
    cfg = T5Config(
        vocab_size=vocab_size, d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=2, num_decoder_layers=3,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False, initializer_factor=0.5,
        relative_attention_num_buckets=32, relative_attention_max_distance=128, n_positions=512,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, task_specific_params=T5_TASKS,
        architectures=["T5ForConditionalGeneration"])
    model = T5ForConditionalGeneration(cfg)
    gen = GenerationConfig(decoder_start_token_id=0, eos_token_id=1, pad_token_id=0)
    return model, gen


def bart_model(vocab_size):
    torch.manual_seed(4)
    cfg = BartConfig(
        vocab_size=vocab_size, d_model=64, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=128,
        init_std=0.25, activation_function="gelu", scale_embedding=False, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, decoder_start_token_id=2, architectures=["BartForConditionalGeneration"])
    model = BartForConditionalGeneration(cfg)
    gen = GenerationConfig(bos_token_id=0, eos_token_id=2, pad_token_id=1, decoder_start_token_id=2,
                           forced_bos_token_id=0, forced_eos_token_id=2)
    return model, gen


# --------------------------------------------------------------------------------------------------
# Export and graph listing
# --------------------------------------------------------------------------------------------------
def export_onnx(pt_dir, onnx_dir):
    """One Optimum export: merged decoder from post-processing, split decoders kept (see export_model.py)."""
    sys.path.insert(0, str(ROOT / "tools"))
    from export_model import export
    export(str(pt_dir), str(onnx_dir), opset=18, merged=True, cross_cache=False)  # as Optimum leaves it


def keep_merged_export(onnx_dir, out_dir, extra_files=()):
    """out_dir gets the encoder and merged decoder of an export, its configs and tokenizer files
    (those present of META_FILES and `extra_files`), and GRAPHS.txt."""
    global ONNX_FILES
    kept = ["encoder_model.onnx", "decoder_model_merged.onnx"]
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    for f in kept + META_FILES + list(extra_files):
        if (onnx_dir / f).exists():
            shutil.copy(onnx_dir / f, out_dir / f)
    graphs, ONNX_FILES = ONNX_FILES, kept
    try:
        (out_dir / "GRAPHS.txt").write_text(describe_graphs(out_dir))
    finally:
        ONNX_FILES = graphs


def export_merged_fixture(model, tok, work, name, extra_files=()):
    """Saves `model` and `tok` under `work`, exports them, keeps the merged layout as fixture `name`
    (keep_merged_export) and returns the model and tokenizer reloaded from the checkpoint."""
    pt_dir, onnx_dir = work / f"{name}-pt", work / f"{name}-onnx"
    model.save_pretrained(pt_dir)
    tok.save_pretrained(pt_dir)
    export_onnx(pt_dir, onnx_dir)
    keep_merged_export(onnx_dir, FIXTURES / name, extra_files)
    return AutoModelForSeq2SeqLM.from_pretrained(pt_dir, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(pt_dir)


def replay_merged(fixture, cases):
    """Replays generation goldens with ONNX Runtime through Optimum (merged decoder); fails on any
    difference."""
    from optimum.onnxruntime import ORTModelForSeq2SeqLM

    ort_model = ORTModelForSeq2SeqLM.from_pretrained(fixture, use_cache=True, use_merged=True)
    tok = AutoTokenizer.from_pretrained(fixture)
    for c in cases:
        enc = tok(c["inputs"], return_tensors="pt", padding=True)
        out = ort_model.generate(**enc, **hf_kwargs(ort_model, c["params"], len(c["inputs"])))
        nret = c["params"].get("num_return_sequences", 1)
        prefix = len(decoder_prefix(c["params"]))
        for i, r in enumerate(c["results"]):
            for j, s in enumerate(r["sequences"]):
                ids = out[i * nret + j, 1:].tolist()
                got = ids[:prefix] + cut_at_eos(ids[prefix:], eos_set(ort_model, c["params"]))
                assert got == s["token_ids"], (c["name"], i, j, got, s["token_ids"])
    print(f"{fixture.name}: {len(cases)} cases replayed with ONNX Runtime")


def describe_graphs(model_dir):
    lines = []
    for name in ONNX_FILES:
        sess = ort.InferenceSession(str(model_dir / name), providers=["CPUExecutionProvider"])
        size = (model_dir / name).stat().st_size
        lines.append(f"== {name} ({size} bytes)")
        for kind, vals in (("input", sess.get_inputs()), ("output", sess.get_outputs())):
            for v in vals:
                lines.append(f"  {kind:6} {v.name:42} {v.type:16} {v.shape}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# Goldens
# --------------------------------------------------------------------------------------------------
def eos_set(model, params):
    eos = params.get("eos_token_id", model.generation_config.eos_token_id)
    return set(eos if isinstance(eos, list) else [eos])


def cut_at_eos(ids, eos):
    for i, t in enumerate(ids):
        if t in eos:
            return ids[: i + 1]
    return ids


class BeamMarginProbe:
    """Smallest score gap at beam search's selection boundaries: between candidates ranked num_beams and
    num_beams + 1 (which may finish / keep running) and beams_to_keep and beams_to_keep + 1, every step."""

    def __init__(self, model):
        self.model, self.margin = model, math.inf
        self.orig = model._get_top_k_continuations

    def __enter__(self):
        def wrapped(accumulated_log_probs, *args, **kwargs):
            k, keep = kwargs["num_beams"], kwargs["beams_to_keep"]
            top = torch.topk(accumulated_log_probs, k=keep + 1, dim=-1).values
            for row in top.tolist():
                for i in (k, keep):
                    if row[i] > -1e8:  # -inf / -1e9: candidates of unused beams
                        self.margin = min(self.margin, row[i - 1] - row[i])
            return self.orig(accumulated_log_probs, *args, **kwargs)

        self.model._get_top_k_continuations = wrapped
        return self

    def __exit__(self, *exc):
        del self.model._get_top_k_continuations


def hf_generate(model, enc, **kwargs):
    """model.generate with a lazily grown cache: transformers 4.57 sizes its default cache from
    config.num_hidden_layers (= T5's encoder depth) and fails when the decoder is deeper."""
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    with torch.no_grad():
        return model.generate(**enc, **kwargs, past_key_values=cache)


def decoder_prefix(params):
    """duet's decoder_prefix (or its older spelling forced_decoder_ids [[1, a], [2, b]])."""
    if "forced_decoder_ids" in params:
        return [t for _, t in params["forced_decoder_ids"]]
    return params.get("decoder_prefix", [])


def hf_kwargs(model, params, batch):
    """`params` as transformers takes them: a decoder prefix is decoder_input_ids after the start token."""
    kwargs = {k: v for k, v in params.items() if k not in ("decoder_prefix", "forced_decoder_ids")}
    prefix = decoder_prefix(params)
    if prefix:
        start = params.get("decoder_start_token_id", model.generation_config.decoder_start_token_id)
        kwargs["decoder_input_ids"] = torch.tensor([[start] + prefix] * batch)
    return kwargs


def run_case(model, tok, name, model_name, inputs, params):
    enc = tok(inputs, return_tensors="pt", padding=True)
    beam = params.get("num_beams", 1) > 1
    prefix = len(decoder_prefix(params))
    with BeamMarginProbe(model) as probe:
        out = hf_generate(model, enc, **hf_kwargs(model, params, len(inputs)), output_scores=True,
                          return_dict_in_generate=True)
    eos = eos_set(model, params)
    gen = out.sequences[:, 1:]  # drop decoder_start_token_id (a decoder prefix stays, as duet returns it)
    if beam:
        trans = model.compute_transition_scores(out.sequences, out.scores, out.beam_indices)
    else:
        trans = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    nret = params.get("num_return_sequences", 1)
    results, margin, ended_by_eos = [], math.inf, []
    for i in range(len(inputs)):
        seqs = []
        for j in range(nret):
            r = i * nret + j
            ids = gen[r].tolist()
            ids = ids[:prefix] + cut_at_eos(ids[prefix:], eos)
            ts = [0.0] * prefix + trans[r, : len(ids) - prefix].tolist()  # duet scores a prefix token 0
            if beam:
                score = out.sequences_scores[r].item()
                lp = params.get("length_penalty", model.generation_config.length_penalty)
                assert abs(sum(ts) / (len(ids) - prefix) ** lp - score) < 1e-4, (name, sum(ts), score)
            else:
                score = sum(ts)
                for step in range(len(ids) - prefix):
                    top2 = torch.topk(out.scores[step][r], 2).values
                    if math.isfinite(top2[1].item()):
                        margin = min(margin, (top2[0] - top2[1]).item())
            ended_by_eos.append(bool(ids) and ids[-1] in eos)
            seqs.append({"token_ids": ids, "text": tok.decode(ids, skip_special_tokens=True),
                         "score": score, "token_scores": ts})
        results.append({"sequences": seqs})
    if beam:
        margin = probe.margin
    case = {"name": name, "model": model_name, "params": params, "inputs": inputs,
            "input_ids": [tok(t)["input_ids"] for t in inputs], "results": results,
            "min_top2_margin": margin}
    return case, ended_by_eos


def eos_override_token(model, tok, text, params, at_step):
    """A token that generation with `params` emits at step >= at_step and not before, chosen so that
    generation with it as eos_token_id ends by EOS (best sequence) before max_new_tokens."""
    enc = tok([text], return_tensors="pt")
    seq = hf_generate(model, enc, **params)[0, 1:].tolist()
    for i in range(at_step, len(seq)):
        if seq[i] in seq[:i] or seq[i] in tok.all_special_ids:
            continue
        out = hf_generate(model, enc, **params, eos_token_id=seq[i])[0, 1:].tolist()
        if seq[i] in out[: params["max_new_tokens"] - 1]:
            return seq[i]
    raise RuntimeError(f"no usable EOS override in {seq}")


# Inputs. T5 ones use the "summarize: " prefix as real T5 pipelines would (except the chat prompt).
TEXTS = {
    "single": "The museum will reopen next month after a long renovation of its old galleries.",
    "short": "Hello world!",
    "chinese": "今天的会议改到下午三点，请大家准时参加。",
    "emoji": "Our picnic 🧺 was ruined by the rain 🌧️, but the kids 👧🧒 still laughed and played in the mud "
             "for an hour while the adults tried to save the sandwiches.",
    "beam_single": "Scientists say the river flooded the fields after three days of heavy rain.",
    "beam_a": "A tourist borrowed a red bicycle.",
    "beam_b": "Heavy rain is expected across the northern region this weekend, and several roads may be closed "
              "near the river.",
    "never": "The orchestra played a symphony that nobody had heard in decades.",
    "penalty": "Farmers are worried about the long dry summer and the price of water for their fields.",
    "eos": "The train to the airport leaves every twenty minutes from the central station.",
    "paragraph": "The city council met on Tuesday to discuss the budget for public libraries. The library offers "
                 "free classes in painting, music and programming. Heavy rain flooded the northern region this "
                 "weekend.",
    "chat": "You are a helpful assistant.\nUser: What is the capital of France?\nAssistant:",
}


def golden_cases(model, tok, model_name):
    p = "summarize: " if model_name == "t5-tiny" else ""
    greedy = {"num_beams": 1, "do_sample": False}
    specs = [
        ("greedy_single", [TEXTS["single"]], {"max_new_tokens": 20, **greedy}),
        ("greedy_batch", [TEXTS["short"], TEXTS["chinese"], TEXTS["emoji"]], {"max_new_tokens": 16, **greedy}),
        ("beam4_return2", [TEXTS["beam_single"]],
         {"max_new_tokens": 16, "num_beams": 4, "num_return_sequences": 2, "length_penalty": 1.0,
          "early_stopping": True, "do_sample": False}),
        ("beam3_batch", [TEXTS["beam_a"], TEXTS["beam_b"]],
         {"max_new_tokens": 16, "num_beams": 3, "num_return_sequences": 1,
          "length_penalty": 2.0 if model_name == "t5-tiny" else 0.5, "early_stopping": False, "do_sample": False}),
        ("beam3_never_return3", [TEXTS["never"]],
         {"max_new_tokens": 12, "num_beams": 3, "num_return_sequences": 3, "early_stopping": "never",
          "do_sample": False}),
        ("greedy_penalties", [TEXTS["penalty"]],
         {"max_new_tokens": 24, "repetition_penalty": 1.5, "no_repeat_ngram_size": 2, **greedy}),
    ]
    eos_text = p + TEXTS["eos"]
    eos_g = eos_override_token(model, tok, eos_text, {"max_new_tokens": 20, **greedy}, at_step=4)
    beam2 = {"num_beams": 2, "num_return_sequences": 2, "do_sample": False}
    eos_b = eos_override_token(model, tok, eos_text, {"max_new_tokens": 20, **beam2}, at_step=3)
    specs += [
        ("greedy_eos_override", [TEXTS["eos"]], {"max_new_tokens": 20, "eos_token_id": eos_g, **greedy}),
        ("greedy_eos_override_min8", [TEXTS["eos"]],
         {"max_new_tokens": 20, "min_new_tokens": 8, "eos_token_id": eos_g, **greedy}),
        ("beam2_eos_override", [TEXTS["eos"]], {"max_new_tokens": 20, "eos_token_id": eos_b, **beam2}),
    ]
    if model_name == "bart-tiny":
        specs.append(("greedy_forced_eos_6", [TEXTS["single"]], {"max_new_tokens": 6, **greedy}))
    return run_specs(model, tok, model_name, specs, prefix=p)


def run_specs(model, tok, model_name, specs, prefix=""):
    """Golden cases from (name, inputs, params) specs; names get the model's prefix (t5_ / bart_)."""
    cases = []
    for name, inputs, params in specs:
        case, eos_flags = run_case(model, tok, model_name.split("-")[0] + "_" + name, model_name,
                                   [prefix + t for t in inputs], params)
        case["ended_by_eos"] = eos_flags
        cases.append(case)
    return cases


def usage_cases(model, tok, model_name):
    """Cases added later and appended after all others: T5's summarization settings (without its length
    limits) and a chat-style prompt (no task prefix)."""
    p = "summarize: " if model_name == "t5-tiny" else ""
    summarize = {"max_new_tokens": 24, "min_new_tokens": 4, "num_beams": 4, "no_repeat_ngram_size": 3,
                 "length_penalty": 1.0, "early_stopping": True, "do_sample": False}
    chat = {"max_new_tokens": 16, "num_beams": 1, "do_sample": False}
    return run_specs(model, tok, model_name, [("summarize_defaults", [p + TEXTS["paragraph"]], summarize),
                                              ("chat_turn", [TEXTS["chat"]], chat)])


def check_cases(cases, model_name):
    by = {c["name"].split("_", 1)[1]: c for c in cases}
    for c in cases:
        assert c["min_top2_margin"] > 1e-3, (c["name"], c["min_top2_margin"])
        for r in c["results"]:
            for s in r["sequences"]:
                assert len(set(s["token_ids"])) > min(3, len(s["token_ids"]) - 1), (c["name"], s["token_ids"])
    g = by["greedy_eos_override"]["results"][0]["sequences"][0]["token_ids"]
    assert by["greedy_eos_override"]["ended_by_eos"] == [True] and len(g) < 20, g
    assert len(by["greedy_eos_override_min8"]["results"][0]["sequences"][0]["token_ids"]) >= 8
    b = by["beam2_eos_override"]
    assert b["ended_by_eos"][0] and len(b["results"][0]["sequences"][0]["token_ids"]) < 20, b["results"]
    if model_name == "bart-tiny":
        for c in cases:
            for r in c["results"]:
                for s in r["sequences"]:
                    assert s["token_ids"][0] == 0, (c["name"], s["token_ids"])
        f = by["greedy_forced_eos_6"]["results"][0]["sequences"][0]["token_ids"]
        assert len(f) == 6 and f[-1] == 2, f


# --------------------------------------------------------------------------------------------------
# Search goldens: encoder embeddings and rerank scores (PyTorch float32, one text at a time)
# --------------------------------------------------------------------------------------------------
EMBED_TEXTS = [
    "Lighthouse",
    "The old lighthouse on the northern coast has guided fishing boats and cargo ships safely through storms, "
    "fog and long winter nights for more than a century, and the town has now decided to turn it into a small "
    "museum about the sea.",
    "科学家在森林里发现了一种新的青蛙。",
    "Great job team 👍 see you tomorrow 😀🎉",
    "  spaced  out  ",
]
QUERY = "Where did scientists discover a new frog?"
PASSAGES = [
    "Scientists discovered a new species of frog in the rainforest.",
    "The train to the airport leaves every twenty minutes.",
    "科学家在森林里发现了一种新的青蛙。",
    "Frogs.",
    "A team of young scientists found the small green frog near the river after the storm.",
    "The recipe calls for 2 cups of flour, 3 eggs and a pinch of salt.",
]
LIKELIHOOD_TEMPLATE = "Passage: {passage} Please write a question based on this passage."
RELEVANCE_TEMPLATE = "Query: {query} Document: {passage} Relevant:"
RELEVANCE_WORDS = [("yes", "no"), ("true", "false")]  # the first pair whose first token ids differ


def embed(model, tok, text):
    """Mean of the encoder's last hidden state over all tokens (special tokens included), L2-normalized."""
    enc = tok(text, return_tensors="pt")
    hidden = model.get_encoder()(input_ids=enc.input_ids, attention_mask=enc.attention_mask).last_hidden_state
    v = hidden[0].mean(0)
    return (v / v.norm()).tolist()


def likelihood_score(model, tok, query, passage):
    """UPR: mean log-probability of the query's tokens (with the tokenizer's specials) given the passage,
    teacher-forced (transformers shifts the labels right behind decoder_start_token_id)."""
    enc = tok(LIKELIHOOD_TEMPLATE.format(passage=passage), return_tensors="pt")
    labels = tok(query, return_tensors="pt").input_ids
    logits = model(**enc, labels=labels, use_cache=False).logits
    return logits[0].log_softmax(-1).gather(-1, labels[0, :, None]).mean().item()


def relevance_ids(tok):
    """The relevance words and the first token id of each: the first pair in RELEVANCE_WORDS that differ."""
    for words in RELEVANCE_WORDS:
        ids = [tok(w, add_special_tokens=False).input_ids[0] for w in words]
        if ids[0] != ids[1]:
            return list(words), ids
    raise RuntimeError("no relevance word pair with distinct first tokens")


def relevance_score(model, tok, query, passage, ids):
    """monoT5: log p(yes) - log p(no) at the first decoder step (decoder input = decoder start token)."""
    enc = tok(RELEVANCE_TEMPLATE.format(query=query, passage=passage), return_tensors="pt")
    start = torch.tensor([[model.config.decoder_start_token_id]])
    lp = model(**enc, decoder_input_ids=start, use_cache=False).logits[0, -1].log_softmax(-1)
    return (lp[ids[0]] - lp[ids[1]]).item()


def search_goldens(model, tok, model_name):
    """One embeddings entry and two rerank entries (likelihood, relevance) for one model."""
    words, ids = relevance_ids(tok)
    with torch.no_grad():
        vectors = [embed(model, tok, t) for t in EMBED_TEXTS]
        likelihood = [likelihood_score(model, tok, QUERY, p) for p in PASSAGES]
        relevance = [relevance_score(model, tok, QUERY, p, ids) for p in PASSAGES]
    embeddings = {"model": model_name, "texts": EMBED_TEXTS, "vectors": vectors}
    common = {"query": QUERY, "passages": PASSAGES}
    rerank = [{"model": model_name, "mode": "likelihood", "template": LIKELIHOOD_TEMPLATE, **common,
               "scores": likelihood},
              {"model": model_name, "mode": "relevance", "template": RELEVANCE_TEMPLATE, **common,
               "relevance_tokens": words, "token_ids": ids, "scores": relevance}]
    return embeddings, rerank


def verify_with_ort(model_dir, cases, embeddings, rerank):
    """Replays the goldens with optimum's ONNX Runtime model, merged and split decoders, and the search
    goldens with plain ONNX Runtime sessions, as a check."""
    from optimum.onnxruntime import ORTModelForSeq2SeqLM

    tok = AutoTokenizer.from_pretrained(model_dir)
    for merged in (True, False):
        ort_model = ORTModelForSeq2SeqLM.from_pretrained(model_dir, use_merged=merged)
        for c in cases:
            enc = tok(c["inputs"], return_tensors="pt", padding=True)
            seqs = ort_model.generate(**enc, **c["params"])[:, 1:].tolist()
            eos = {c["params"].get("eos_token_id", tok.eos_token_id)}
            got = [cut_at_eos(s, eos) for s in seqs]
            want = [s["token_ids"] for r in c["results"] for s in r["sequences"]]
            assert got == want, (c["name"], merged, got, want)
        print(f"  onnxruntime ({'merged' if merged else 'split'} decoder) reproduces {len(cases)} {model_dir.name} cases")
    verify_search_with_ort(model_dir, tok, embeddings, rerank)


def verify_search_with_ort(model_dir, tok, embeddings, rerank):
    """Recomputes embeddings (encoder_model.onnx) and rerank scores (decoder_model.onnx, the whole decoder
    input at once, no past) and checks them against the PyTorch values to 1e-4."""
    def session(name):
        return ort.InferenceSession(str(model_dir / name), providers=["CPUExecutionProvider"])

    encoder, decoder = session("encoder_model.onnx"), session("decoder_model.onnx")
    start = json.loads((model_dir / "config.json").read_text())["decoder_start_token_id"]

    def encode(text):
        enc = {k: v.astype(np.int64) for k, v in tok(text, return_tensors="np").items()}
        return enc, encoder.run(["last_hidden_state"], enc)[0]

    def log_probs(text, decoder_ids):
        enc, hidden = encode(text)
        logits = decoder.run(["logits"], {"input_ids": np.array([decoder_ids], dtype=np.int64),
                                          "encoder_attention_mask": enc["attention_mask"],
                                          "encoder_hidden_states": hidden})[0]
        return torch.from_numpy(logits[0]).log_softmax(-1)

    def embed_ort(text):
        v = torch.from_numpy(encode(text)[1][0]).mean(0)
        return (v / v.norm()).tolist()

    def score_ort(r, passage):
        if r["mode"] == "likelihood":
            target = tok(r["query"]).input_ids
            lp = log_probs(r["template"].format(passage=passage), [start] + target[:-1])
            return lp[torch.arange(len(target)), torch.tensor(target)].mean().item()
        lp = log_probs(r["template"].format(query=r["query"], passage=passage), [start])[-1]
        return (lp[r["token_ids"][0]] - lp[r["token_ids"][1]]).item()

    got = [embed_ort(t) for t in embeddings["texts"]]
    diff = max(abs(a - b) for g, w in zip(got, embeddings["vectors"]) for a, b in zip(g, w))
    print(f"  onnxruntime embeddings: max abs diff {diff:.2e}")
    assert diff < 1e-4, diff
    for r in rerank:
        diff = max(abs(score_ort(r, p) - s) for p, s in zip(r["passages"], r["scores"]))
        print(f"  onnxruntime rerank {r['mode']}: max abs diff {diff:.2e}")
        assert diff < 1e-4, (r["mode"], diff)


# --------------------------------------------------------------------------------------------------
def build(name, tok, make_model, work):
    pt_dir, onnx_dir, out_dir = work / f"{name}-pt", work / f"{name}-onnx", FIXTURES / name
    model, gen = make_model(len(tok) if name == "bart-tiny" else -(-len(tok) // 32) * 32)
    model.generation_config = gen
    model.save_pretrained(pt_dir)
    tok.save_pretrained(pt_dir)
    export_onnx(pt_dir, onnx_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    for f in ONNX_FILES + META_FILES:
        shutil.copy(onnx_dir / f, out_dir / f)
    (out_dir / "GRAPHS.txt").write_text(describe_graphs(out_dir))
    cross_cache_encoder(out_dir)
    masked_decoder(out_dir)
    shared_decoder(out_dir)
    fused_decoder(out_dir)
    in_place_decoder(out_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(pt_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(pt_dir)
    cases, usage = golden_cases(model, tok, name), usage_cases(model, tok, name)
    check_cases(cases + usage, name)
    return cases, usage, *search_goldens(model, tok, name)


CROSS_ENCODER = "encoder_with_cross_cache.onnx"


def cross_cache_encoder(fixture):
    """<fixture>/encoder_with_cross_cache.onnx: the encoder as tools/export_model.py leaves it (it also
    returns the decoder's cross-attention cache); tests swap it in for the with_past layout."""
    import export_lib as lib

    with tempfile.TemporaryDirectory() as tmp:
        for f in [lib.ENCODER, lib.DECODER, lib.DECODER_PAST]:
            shutil.copy(fixture / f, Path(tmp) / f)
        print(f"{fixture.name}: {lib.add_cross_cache_to_encoder(Path(tmp))}")
        shutil.copy(Path(tmp) / lib.ENCODER, fixture / CROSS_ENCODER)


MASKED_DECODER = "decoder_with_past_masked.onnx"


def masked_decoder(fixture):
    """<fixture>/decoder_with_past_masked.onnx: the with-past decoder with a self-attention mask
    (tools/decoder_mask.py); tests swap it in for the scheduler's cross-position batching."""
    import decoder_mask

    note = decoder_mask.add_mask(fixture, fixture / MASKED_DECODER)
    if (fixture / MASKED_DECODER).exists():
        note += "; " + decoder_mask.check(fixture, fixture / MASKED_DECODER)
    print(f"{fixture.name}: {note}")


SHARED_DECODER = "decoder_with_past_shared.onnx"


def shared_decoder(fixture):
    """<fixture>/decoder_with_past_shared.onnx: the masked with-past decoder whose beams share one
    cross-attention cache row (tools/share_cross_cache.py), as tools/export_model.py leaves it."""
    import share_cross_cache

    note = share_cross_cache.apply(fixture, MASKED_DECODER, fixture / SHARED_DECODER)
    print(f"{fixture.name}: {note}")


FUSED_DECODER = "decoder_with_past_fused.onnx"


def fused_decoder(fixture):
    """<fixture>/decoder_with_past_fused.onnx: the shared decoder with its self-attention fused into
    MultiHeadAttention (tools/fuse_attention.py, export_model.py --fuse)."""
    import fuse_attention

    note = fuse_attention.apply(fixture, SHARED_DECODER, fixture / FUSED_DECODER)
    print(f"{fixture.name}: {note}")


IN_PLACE_DECODER = "decoder_with_past_in_place.onnx"


def in_place_decoder(fixture):
    """<fixture>/decoder_with_past_in_place.onnx: the fused decoder appending its self-attention cache
    in place (tools/in_place_cache.py, export_model.py --in-place-cache)."""
    import in_place_cache

    note = in_place_cache.apply(fixture, FUSED_DECODER, fixture / IN_PLACE_DECODER)
    print(f"{fixture.name}: {note}")


# bart-tiny-fp16 keeps export_model.py's default of weights in <graph>_data files, so the tests also
# cover external data; the others keep their weights inside the graphs.
HALF_PRECISION = [("t5-tiny", "fp16", True), ("bart-tiny", "fp16", False), ("t5-tiny", "bf16", True)]


def half_precision_fixtures():
    """<model>-fp16 / -bf16: the fp32 fixtures through tools/export_model.py --dtype (GPU precision paths;
    ONNX Runtime's CPU provider runs the fp16 ones, tools/gpu_check.sh all of them)."""
    for name, dtype, single_file in HALF_PRECISION:
        out = FIXTURES / f"{name}-{dtype}"
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run([sys.executable, str(ROOT / "tools/export_model.py"), str(FIXTURES / name), str(out),
                        "--dtype", dtype] + (["--single-file"] if single_file else []), check=True)
        (out / "GRAPHS.txt").unlink(missing_ok=True)
        (out / CROSS_ENCODER).unlink(missing_ok=True)  # its encoder_model.onnx has the cache already
        (out / MASKED_DECODER).unlink(missing_ok=True)  # its decoder_with_past_model.onnx has the mask already
        (out / SHARED_DECODER).unlink(missing_ok=True)  # and shares the cross-attention cache
        (out / FUSED_DECODER).unlink(missing_ok=True)  # fusion is for float32 graphs
        (out / IN_PLACE_DECODER).unlink(missing_ok=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep-work", help="build in this directory and keep it (default: a temporary one)")
    ap.add_argument("--no-verify", action="store_true", help="skip replaying the goldens with ONNX Runtime")
    ap.add_argument("--half-only", action="store_true", help="only remake the fp16/bf16 fixtures from the fp32 ones")
    args = ap.parse_args()
    if args.half_only:
        sys.path.insert(0, str(ROOT / "tools"))
        for name in ("t5-tiny", "bart-tiny"):
            cross_cache_encoder(FIXTURES / name)
            masked_decoder(FIXTURES / name)
            shared_decoder(FIXTURES / name)
            fused_decoder(FIXTURES / name)
            in_place_decoder(FIXTURES / name)
        return half_precision_fixtures()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    work = Path(args.keep_work or tempfile.mkdtemp(prefix="duet-fixtures-"))
    work.mkdir(parents=True, exist_ok=True)
    lines = corpus()
    built = {"t5-tiny": build("t5-tiny", t5_tokenizer(lines), t5_model, work),
             "bart-tiny": build("bart-tiny", bart_tokenizer(lines), bart_model, work)}
    # the usage cases came later: they follow all others so that the earlier cases keep their places
    cases = [c for b in built.values() for c in b[0]] + [c for b in built.values() for c in b[1]]
    goldens = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
               "cases": [{k: v for k, v in c.items() if k != "ended_by_eos"} for c in cases]}
    (FIXTURES / "goldens.json").write_text(json.dumps(goldens, ensure_ascii=False, indent=1) + "\n")
    search = {"transformers_version": transformers.__version__, "embeddings": [b[2] for b in built.values()],
              "rerank": [r for b in built.values() for r in b[3]]}
    (FIXTURES / "search_goldens.json").write_text(json.dumps(search, ensure_ascii=False, indent=1) + "\n")
    for c in cases:
        print(f"{c['name']:34} eos={c['ended_by_eos']} margin={c['min_top2_margin']:.4f} {json.dumps(c['params'])}")
    if not args.no_verify:
        for name, (_, _, embeddings, rerank) in built.items():
            verify_with_ort(FIXTURES / name, [c for c in cases if c["model"] == name], embeddings, rerank)
    half_precision_fixtures()
    if not args.keep_work:
        shutil.rmtree(work)
    for p in sorted(FIXTURES.rglob("*")):
        if p.is_file():
            print(f"{p.stat().st_size:>9}  {p.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
