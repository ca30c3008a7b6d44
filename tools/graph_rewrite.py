"""What the with-past decoder's graph rewrites (tools/share_cross_cache.py, fuse_attention.py,
in_place_cache.py) share: rewriting a graph file beside itself behind its numeric check, and their
command line."""
import argparse
import sys
from pathlib import Path

GRAPH = "decoder_with_past_model.onnx"


def rewrite_file(model_dir, graph, out, run_check, rewrite, check, refused, not_done, suffix):
    """Loads MODEL_DIR/graph (weights left where they are), `rewrite(model)` -> note, saves it beside the
    destination (so external data stays valid), runs `check(src, new)` when asked and moves it into
    place (default: over the original). A `refused` exception from `rewrite` leaves the graph unchanged:
    returns `not_done` and why. A failed check raises SystemExit and leaves nothing behind."""
    import onnx

    src = Path(model_dir) / graph
    dst = Path(out) if out else src
    model = onnx.load(str(src), load_external_data=False)
    try:
        note = rewrite(model)
    except refused as e:
        return f"{not_done}: {e}"
    if note.startswith("already"):
        return note
    tmp = dst.with_name(dst.name + suffix)
    onnx.save(model, str(tmp))
    if run_check:
        try:
            note += "; " + check(src, tmp)
        except SystemExit:
            tmp.unlink()
            raise
        except Exception as e:  # noqa: BLE001 - e.g. a session this machine cannot make
            tmp.unlink()
            raise SystemExit(f"{dst}: cannot check it here: {str(e)[:200]}") from e
    tmp.replace(dst)
    return note


def cpu_sessions(*paths):
    """Quiet ONNX Runtime CPU sessions of the graphs at `paths`, for a rewrite's check."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return [ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for p in paths]


def run_cli(doc, apply_fn, not_done, default_graph=GRAPH):
    """MODEL_DIR [--graph FILE] [--out FILE] [--check]; exits 1 when the rewrite was refused."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--graph", default=default_graph,
                    help=f"the with-past decoder's file in MODEL_DIR (default {default_graph})")
    ap.add_argument("--out", help="where to write (default: in place; the same directory keeps external data valid)")
    ap.add_argument("--check", action="store_true", help="compare with the original on random inputs")
    args = ap.parse_args()
    note = apply_fn(args.model_dir, args.graph, args.out, args.check)
    print(f"{args.graph}: {note}")
    if note.startswith(not_done):
        sys.exit(1)
