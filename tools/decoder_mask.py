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
input. T5-family relative position bias depends only on key - query distance, which left padding
keeps. Absolute positions (BART, mBART, Marian, Pegasus: a Gather from a position table at indices
computed from the past length) are moved back by each row's padding, the mask's zeros, so a row's
positions stay its own; with the default mask nothing moves. A graph where these nodes are not
found as expected is refused. --check runs the graph with ONNX Runtime: a left-padded, masked row
gives the logits of the same row unpadded, and without the mask fed the graph gives the original's.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

GRAPH = "decoder_with_past_model.onnx"
MASK = "decoder_attention_mask"
RELATIVE_POSITION_FAMILIES = {"t5", "mt5", "longt5", "umt5"}
ABSOLUTE_POSITION_FAMILIES = {"bart", "mbart", "marian", "pegasus", "m2m100", "nllb-moe"}


def position_gathers(graph):
    """Gathers from an initializer table at indices computed through a Range (the past length):
    the decoder's position embedding lookups."""
    producers = {o: n for n in graph.node for o in n.output}
    inits = {t.name for t in graph.initializer}

    def has_range(name, depth=0):
        node = producers.get(name)
        if node is None or depth > 8:
            return False
        return node.op_type == "Range" or any(has_range(i, depth + 1) for i in node.input)

    return [n for n in graph.node if n.op_type == "Gather" and n.input[0] in inits and has_range(n.input[1])]


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
    if family not in RELATIVE_POSITION_FAMILIES | ABSOLUTE_POSITION_FAMILIES:
        return f"skipped: {family} is not a family whose positions this tool knows"
    path = model_dir / GRAPH
    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    if any(i.name == MASK for i in graph.input):
        return "already there"
    softmaxes = self_attention_softmaxes(graph)
    layers = sum(1 for i in graph.input if i.name.endswith(".decoder.key"))
    if len(softmaxes) != layers:
        return f"skipped: found {len(softmaxes)} self-attention Softmax nodes for {layers} layers"
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
    positions = position_gathers(graph) if family in ABSOLUTE_POSITION_FAMILIES else []
    if family in ABSOLUTE_POSITION_FAMILIES and len(positions) != 1:
        return f"skipped: found {len(positions)} position lookups, expected 1"
    if positions:
        # pads = mask width - sum(mask), per row; the lookup's indices move back by it.
        nodes += [
            helper.make_node("Shape", [MASK], ["duet_mask_shape"], name="duet_mask_shape"),
            helper.make_node("Constant", [], ["duet_mask_width_at"], value=numpy_helper.from_array(np.array([1], np.int64)), name="duet_mask_width_at"),
            helper.make_node("Gather", ["duet_mask_shape", "duet_mask_width_at"], ["duet_mask_width"], axis=0, name="duet_mask_width"),
            helper.make_node("ReduceSum", [MASK, "duet_mask_width_at"], ["duet_mask_real"], keepdims=1, name="duet_mask_real"),
            helper.make_node("Sub", ["duet_mask_width", "duet_mask_real"], ["duet_mask_pads"], name="duet_mask_pads"),
        ]
        lookup = positions[0]
        nodes.append(helper.make_node("Sub", [lookup.input[1], "duet_mask_pads"], ["duet_positions_unpadded"], name="duet_positions_unpadded"))
        lookup.input[1] = "duet_positions_unpadded"
    prelude = len(nodes)
    for k, softmax in enumerate(softmaxes):
        scores = softmax.input[0]
        masked = f"duet_masked_scores_{k}"
        nodes.append(helper.make_node("Add", [scores, "duet_mask_additive"], [masked], name=f"duet_mask_add_{k}"))
        softmax.input[0] = masked
    # The mask's nodes go first (they read graph inputs only); the position Sub right before its
    # lookup, each scores Add right before its Softmax, so the order stays topological.
    order = list(graph.node)
    del graph.node[:]
    mask_nodes = [n for n in nodes[:prelude] if n.name != "duet_positions_unpadded"]
    graph.node.extend(mask_nodes)
    adds = nodes[prelude:]
    for node in order:
        if positions and node is positions[0]:
            graph.node.append(next(n for n in nodes if n.name == "duet_positions_unpadded"))
        for k, softmax in enumerate(softmaxes):
            if node is softmax:
                graph.node.append(adds[k])
        graph.node.append(node)
    onnx.save(model, str(out or path))
    onnx.checker.check_model(str(out or path))  # by path: external data is found beside it
    moved = ", positions moved back by each row's padding" if positions else ""
    return f"self-attention mask `{MASK}` before {len(softmaxes)} Softmax nodes{moved}"


def check(model_dir, graph=None, tol=1e-5):
    """A row left-padded by 3 and masked gives the logits of the same row unpadded, and without the
    mask fed the graph gives the original graph's logits."""
    import onnxruntime as ort

    model_dir = Path(model_dir)
    graph = Path(graph or model_dir / GRAPH)
    quiet = ort.SessionOptions()
    quiet.log_severity_level = 3  # not the warning that the mask's default is an overridable initializer
    sess = ort.InferenceSession(str(graph), quiet, providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in sess.get_inputs()}
    rng = np.random.default_rng(0)
    key = inputs["past_key_values.0.decoder.key"].shape
    heads, d_kv, enc_len, past, pad = key[1], key[3], 5, 4, 3
    width = inputs["encoder_hidden_states"].shape[2] if "encoder_hidden_states" in inputs else None
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
            feeds[name] = padded[name] = rng.standard_normal((2, enc_len, width)).astype(np.float32)
    mask = np.ones((2, pad + past + 1), np.int64)
    mask[:, :pad] = 0
    padded[MASK] = mask
    want = sess.run(["logits"], feeds)[0]
    got = sess.run(["logits"], padded)[0]
    diff = float(np.abs(want - got).max())
    if diff > tol:
        raise SystemExit(f"{graph}: masked left padding changes the logits by {diff:.2e}")
    if graph != model_dir / GRAPH:
        original = ort.InferenceSession(str(model_dir / GRAPH), quiet, providers=["CPUExecutionProvider"]).run(["logits"], feeds)[0]
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
