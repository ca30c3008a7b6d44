#!/usr/bin/env python3
"""Gives decoder_with_past_model.onnx a self-attention mask, so that rows at different decoding
positions can share one decoder run (duet's scheduler batches requests that joined at different
steps: their caches are left-padded to one length, the padding masked out).

    python tools/decoder_mask.py MODEL_DIR [--out FILE] [--check]

Adds the int64 input `decoder_attention_mask` [batch, past + 1] (1: a real position, 0: padding)
with a default of ones (an initializer of shape [1, 1]): a caller that does not feed it gets the
graph's old results. Before every self-attention Softmax, (mask - 1) * 3.4e38 is added to the
scores, as transformers' additive masks do (a masked position's weight is exactly 0). The
self-attention Softmaxes are those whose keys come from a Concat with a `past_key_values.*.decoder.key`
input. Only for families whose decoder has no absolute positions (T5, mT5, LongT5: relative
position bias depends only on key - query distance, which left padding keeps); BART-style learned or
sinusoidal positions would need per-row position ids and are refused. --check runs the graph with
ONNX Runtime: a left-padded, masked row gives the logits of the same row unpadded.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

GRAPH = "decoder_with_past_model.onnx"
MASK = "decoder_attention_mask"
RELATIVE_POSITION_FAMILIES = {"t5", "mt5", "longt5", "umt5"}


def self_attention_softmaxes(graph):
    producers = {o: n for n in graph.node for o in n.output}

    def reaches_decoder_past(name, depth=0):
        node = producers.get(name)
        if node is None:
            return name.startswith("past_key_values.") and name.endswith(".decoder.key")
        if depth > 6:
            return False
        return any(reaches_decoder_past(i, depth + 1) for i in node.input)

    found = []
    for node in graph.node:
        if node.op_type != "Softmax":
            continue
        # Softmax <- [Cast] <- Add(MatMul(q, Transpose(K)), bias) : walk to the MatMul's key side.
        name = node.input[0]
        matmul = None
        for _ in range(4):
            p = producers.get(name)
            if p is None:
                break
            if p.op_type == "MatMul":
                matmul = p
                break
            name = p.input[0]
        if matmul is not None and reaches_decoder_past(matmul.input[1]):
            found.append(node)
    return found


def add_mask(model_dir, out=None):
    """Rewrites MODEL_DIR/decoder_with_past_model.onnx (or writes the result to `out`)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model_dir = Path(model_dir)
    family = json.loads((model_dir / "config.json").read_text()).get("model_type")
    if family not in RELATIVE_POSITION_FAMILIES:
        return f"skipped: {family} has absolute decoder positions (a mask alone would change its outputs)"
    path = model_dir / GRAPH
    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    if any(i.name == MASK for i in graph.input):
        return "already there"
    softmaxes = self_attention_softmaxes(graph)
    layers = sum(1 for i in graph.input if i.name.endswith(".decoder.key"))
    if len(softmaxes) != layers:
        raise SystemExit(f"{path}: found {len(softmaxes)} self-attention Softmax nodes for {layers} layers")
    graph.input.append(helper.make_tensor_value_info(MASK, TensorProto.INT64, ["batch_size", "past_decoder_sequence_length + 1"]))
    graph.initializer.append(numpy_helper.from_array(np.ones((1, 1), dtype=np.int64), MASK))
    nodes = [
        helper.make_node("Cast", [MASK], ["duet_mask_float"], to=TensorProto.FLOAT, name="duet_mask_cast"),
        helper.make_node("Constant", [], ["duet_mask_one"], value=numpy_helper.from_array(np.array(1.0, np.float32)), name="duet_mask_one"),
        helper.make_node("Constant", [], ["duet_mask_big"], value=numpy_helper.from_array(np.array(3.4028235e38, np.float32)), name="duet_mask_big"),
        helper.make_node("Sub", ["duet_mask_float", "duet_mask_one"], ["duet_mask_shifted"], name="duet_mask_sub"),
        helper.make_node("Mul", ["duet_mask_shifted", "duet_mask_big"], ["duet_mask_additive_2d"], name="duet_mask_mul"),
        helper.make_node("Constant", [], ["duet_mask_axes"], value=numpy_helper.from_array(np.array([1, 2], np.int64)), name="duet_mask_axes"),
        helper.make_node("Unsqueeze", ["duet_mask_additive_2d", "duet_mask_axes"], ["duet_mask_additive"], name="duet_mask_unsqueeze"),
    ]
    for k, softmax in enumerate(softmaxes):
        scores = softmax.input[0]
        masked = f"duet_masked_scores_{k}"
        nodes.append(helper.make_node("Add", [scores, "duet_mask_additive"], [masked], name=f"duet_mask_add_{k}"))
        softmax.input[0] = masked
    # Inserted first: the topological order holds (the mask depends on graph inputs only, each Add on
    # its Softmax's old input, which is computed before the Softmax).
    order = list(graph.node)
    positions = {id(n): i for i, n in enumerate(order)}
    del graph.node[:]
    graph.node.extend(nodes[:7])
    for node in order:
        for k, softmax in enumerate(softmaxes):
            if node is softmax:
                graph.node.append(nodes[7 + k])
        graph.node.append(node)
    del positions
    onnx.save(model, str(out or path))
    onnx.checker.check_model(str(out or path))  # by path: external data is found beside it
    return f"self-attention mask `{MASK}` before {len(softmaxes)} Softmax nodes"


def check(model_dir, graph=None, tol=1e-5):
    """A row left-padded by 3 and masked gives the logits of the same row unpadded, and without the
    mask fed the graph gives the original graph's logits."""
    import onnxruntime as ort

    model_dir = Path(model_dir)
    graph = Path(graph or model_dir / GRAPH)
    sess = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in sess.get_inputs()}
    rng = np.random.default_rng(0)
    cfg = json.loads((model_dir / "config.json").read_text())
    heads, d_kv, enc_len, past, pad = cfg["num_heads"], cfg["d_kv"], 5, 4, 3
    feeds = {"input_ids": np.array([[7], [9]], np.int64), "encoder_attention_mask": np.ones((2, enc_len), np.int64)}
    padded = dict(feeds)
    for name in inputs:
        if name.startswith("past_key_values."):
            length = past if ".decoder." in name else enc_len
            value = rng.standard_normal((2, heads, length, d_kv)).astype(np.float32)
            feeds[name] = value
            if ".decoder." in name:
                value = np.concatenate([np.zeros((2, heads, pad, d_kv), np.float32), value], axis=2)
            padded[name] = value
        elif name == "encoder_hidden_states":
            feeds[name] = padded[name] = rng.standard_normal((2, enc_len, cfg["d_model"])).astype(np.float32)
    mask = np.ones((2, pad + past + 1), np.int64)
    mask[:, :pad] = 0
    padded[MASK] = mask
    want = sess.run(["logits"], feeds)[0]
    got = sess.run(["logits"], padded)[0]
    diff = float(np.abs(want - got).max())
    if diff > tol:
        raise SystemExit(f"{graph}: masked left padding changes the logits by {diff:.2e}")
    if graph != model_dir / GRAPH:
        original = ort.InferenceSession(str(model_dir / GRAPH), providers=["CPUExecutionProvider"]).run(["logits"], feeds)[0]
        if not np.array_equal(original, want):
            raise SystemExit(f"{graph}: without a mask fed, the logits differ from {GRAPH}'s")
    return f"left padding masked: logits within {diff:.1e}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--out", help="write the graph here instead of rewriting decoder_with_past_model.onnx")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    print(add_mask(args.model_dir, args.out))
    if args.check:
        print(check(args.model_dir, args.out))


if __name__ == "__main__":
    sys.exit(main())
