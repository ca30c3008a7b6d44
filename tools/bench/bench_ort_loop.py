#!/usr/bin/env python3
"""ONNX Runtime, Python loop over an export of tools/export_model.py: encoder once, then the merged
decoder (or --split: decoder_model + decoder_with_past) with the KV cache, greedy, exactly
--new-tokens steps (EOS suppressed), intra-op threads 2. Prints one JSON line (see benchlib.py).

    python tools/bench/bench_ort_loop.py --model DIR --input-file FILE --batch B [--split]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import benchlib  # noqa: E402


def main():
    ap = benchlib.parse_args(__doc__)
    ap.add_argument("--split", action="store_true", help="split decoders instead of the merged one")
    ap.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                    help="ONNX Runtime session config entry, e.g. session.disable_prepacking=1")
    ap.add_argument("--no-arena", action="store_true", help="disable the CPU memory arena")
    args = ap.parse_args()
    import numpy as np
    import onnxruntime as ort
    from export_lib import OrtSeq2Seq

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
    so.enable_cpu_mem_arena = not args.no_arena
    for kv in args.config:
        so.add_session_config_entry(*kv.split("=", 1))

    model = Path(args.model)
    ids, _ = benchlib.tokenize(model / "tokenizer.json", benchlib.read_input(args))
    batch = np.array([ids] * args.batch, np.int64)
    m = OrtSeq2Seq(model, merged=not args.split, session_options=so)

    def once():
        toks, enc, total = m.generate(batch, args.new_tokens, min_new=args.new_tokens, stop_at_eos=False)
        return enc, total, toks.shape[1]

    res = benchlib.measure(once, args.runs)
    extra = {"options": args.config + (["no-arena"] if args.no_arena else [])} if args.config or args.no_arena else {}
    benchlib.report("ort-loop" + ("-split" if args.split else ""), args.variant or model.name, args.batch,
                    args.new_tokens, len(ids), res, **extra)


if __name__ == "__main__":
    main()
