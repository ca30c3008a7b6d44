#!/usr/bin/env python3
"""Makes the fused with-past decoder append its self-attention cache in place: each layer's
MultiHeadAttention (tools/fuse_attention.py) becomes ONNX Runtime's GroupQueryAttention with as many
key/value heads as query heads, which writes the new keys and values into the past buffer itself
when the caller binds the present output to the past input's memory.

    python tools/in_place_cache.py MODEL_DIR [--graph FILE] [--out FILE] [--check]

The graph's contract changes in two ways, both visible in its inputs and outputs:
- `past_key_values.N.decoder.{key,value}` and `present.N.decoder.{key,value}` are buffers of
  `cache_capacity` positions (`[rows, heads, cache_capacity, head_dim]`); positions from
  `past_sequence_length` on are free, and a step writes its new positions there.
- a new input `past_sequence_length` (int64, `[1]`) says how many positions the buffers hold.
  Every place the graph read the cache's length from its shape (T5's relative position bias, the
  causal and self-attention masks) reads it from there instead.
So a step costs what the new positions cost, instead of a `Concat` copying the whole cache into a
new tensor per layer and step. duet binds each present to its past (IoBinding) whenever the with-past
graph has this input, and grows the buffers (by doubling) when they fill.

Left-padded rows (duet's batches of requests at different positions) are unchanged: every row holds
`past_sequence_length` positions, and the padding is masked by the attention bias as before.

--check runs the original and the rewritten graph with ONNX Runtime on random inputs (past lengths
0 to 9, several new positions over an empty cache, padded rows), the rewritten one on buffers larger
than needed with NaN in the free positions, present bound to past: logits and the cache's used
positions must match within 1e-4 relative (5e-2 and the same most likely token at every position where
activations are quantized at run time: there the kernels' last-bit differences can cross a rounding
step). Weights are not touched (external data stays valid).
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import graph_rewrite  # noqa: E402

GRAPH = "decoder_with_past_model.onnx"
MS_DOMAIN = "com.microsoft"
PAST_LENGTH = "past_sequence_length"
CAPACITY = "cache_capacity"
TOLERANCE = 1e-4
# Where activations are quantized at run time (MatMulNBits at accuracy level 4, MatMulInteger), the
# attention kernel's last-bit differences can move a value across a rounding step: such graphs are
# held to a looser bound and the same argmax at every position.
QUANTIZED_OPS = {"MatMulNBits", "MatMulInteger", "DynamicQuantizeLinear"}
QUANTIZED_TOLERANCE = 5e-2


class Refused(ValueError):
    pass


def self_cache_names(graph):
    past = [i.name for i in graph.input if i.name.startswith("past_key_values.") and ".decoder." in i.name]
    present = [o.name for o in graph.output if o.name.startswith("present.") and ".decoder." in o.name]
    return past, present


def is_in_place(graph):
    return any(i.name == PAST_LENGTH for i in graph.input)


def rewrite(model):
    """Rewrites `model` (a fused with-past decoder's ModelProto) in place; returns a note."""
    from onnx import TensorProto, helper

    g = model.graph
    if is_in_place(g):
        return "already in place"
    past, present = self_cache_names(g)
    if not past or len(past) != len(present):
        raise Refused("the graph has no self-attention cache inputs and outputs")
    every = list(g.node)  # held, so that each node's id stays its own while it is compared
    mha = [n for n in every if n.op_type == "MultiHeadAttention" and n.domain == MS_DOMAIN]
    fused_pasts = {name for n in mha for name in n.input[6:8]}
    if fused_pasts != set(past):
        raise Refused("not every self-attention layer is a fused MultiHeadAttention (run tools/fuse_attention.py first)")

    pre = "/duet_in_place/"
    length = pre + "lengths/"
    nodes = [
        helper.make_node("Shape", ["input_ids"], [length + "rows"], start=0, end=1),
        helper.make_node("Shape", ["input_ids"], [length + "new"], start=1, end=2),
        helper.make_node("Add", [PAST_LENGTH, length + "new"], [length + "total64"]),
        helper.make_node("Cast", [length + "total64"], [length + "total32"], to=TensorProto.INT32),
        helper.make_node("Squeeze", [length + "total32"], [length + "total"]),
        helper.make_node("Constant", [], [length + "one"], value_ints=[1]),
        helper.make_node("Sub", [length + "total64", length + "one"], [length + "last64"]),
        helper.make_node("Cast", [length + "last64"], [length + "last32"], to=TensorProto.INT32),
        helper.make_node("Expand", [length + "last32", length + "rows"], [length + "seqlens_k"]),
    ]
    replaced = set()
    for k, n in enumerate(mha):
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.input[4] or (len(n.input) > 8 and any(n.input[8:])):
            raise Refused(f"{n.name}: a key padding mask or past_sequence_length is already in use")
        if len(n.output) != 3 or list(n.output[1:]) != [p.replace("past_key_values.", "present.") for p in n.input[6:8]]:
            raise Refused(f"{n.name}: its presents are not the graph's")
        q, key, v = n.input[0], n.input[1], n.input[2]
        if n.input[3]:  # the packed [q | k | v] projection bias: GroupQueryAttention takes none
            bias = next((t for t in g.initializer if t.name == n.input[3]), None)
            if bias is None or len(bias.dims) != 1 or bias.dims[0] % 3:
                raise Refused(f"{n.name}: its projection bias is not a packed [q | k | v] initializer")
            names = [f"{pre}{k}/bias_{s}" for s in "qkv"]
            nodes.append(helper.make_node("Constant", [], [f"{pre}{k}/bias_split"], value_ints=[bias.dims[0] // 3] * 3))
            nodes.append(helper.make_node("Split", [n.input[3], f"{pre}{k}/bias_split"], names, axis=0))
            added = [f"{pre}{k}/{s}_biased" for s in "qkv"]
            nodes.extend(helper.make_node("Add", [x, b], [y]) for x, b, y in zip((q, key, v), names, added))
            q, key, v = added
        gqa_attrs = {"num_heads": attrs["num_heads"], "kv_num_heads": attrs["num_heads"]}
        if "scale" in attrs:
            gqa_attrs["scale"] = attrs["scale"]
        nodes.append(helper.make_node(
            "GroupQueryAttention",
            [q, key, v, n.input[6], n.input[7], length + "seqlens_k", length + "total", "", "", "",
             n.input[5] if len(n.input) > 5 else ""],
            list(n.output), domain=MS_DOMAIN, name=f"{pre}{k}/attention", **gqa_attrs))
        replaced.add(id(n))

    if any(i in present for n in every for i in n.input):
        raise Refused("a node reads a present self-attention cache, which becomes the whole buffer")
    # Whatever read the cache's shape now reads its logical shape: [rows, heads, length, head_dim].
    for n in every:
        if id(n) in replaced:
            continue
        reads = [i for i in n.input if i in past]
        if not reads:
            continue
        if n.op_type != "Shape":
            raise Refused(f"{n.name} ({n.op_type}) reads the self-attention cache other than through its shape")
        attrs = {a.name: a.i for a in n.attribute}
        start, end = attrs.get("start", 0), attrs.get("end", 4)
        logical = f"{pre}shape/{n.output[0]}"
        nodes += [helper.make_node("Shape", [reads[0]], [logical + "/head"], start=0, end=2),
                  helper.make_node("Shape", [reads[0]], [logical + "/tail"], start=3, end=4),
                  helper.make_node("Concat", [logical + "/head", PAST_LENGTH, logical + "/tail"], [logical], axis=0),
                  helper.make_node("Constant", [], [logical + "/start"], value_ints=[start]),
                  helper.make_node("Constant", [], [logical + "/end"], value_ints=[end]),
                  helper.make_node("Slice", [logical, logical + "/start", logical + "/end"], [n.output[0]])]
        replaced.add(id(n))

    kept = [n for n in every if id(n) not in replaced]
    del g.node[:]
    g.node.extend(kept + nodes)
    from fuse_attention import insert_in_order, prune

    insert_in_order(g, [])
    prune(g)
    for value in list(g.input) + list(g.output):
        if value.name in past or value.name in present:
            value.type.tensor_type.shape.dim[2].dim_param = CAPACITY
    g.input.append(helper.make_tensor_value_info(PAST_LENGTH, TensorProto.INT64, [1]))
    return f"{len(mha)} self-attention layers append in place (GroupQueryAttention, input {PAST_LENGTH})"


def random_feeds(session, rows, past, new, rng, padded):
    """Feeds for the original graph: `rows` rows, `past` cached positions, `new` new tokens."""
    feeds = {}
    encoder_len = 7
    for i in session.get_inputs():
        name, shape = i.name, i.shape
        if name == "input_ids":
            feeds[name] = rng.integers(0, 50, (rows, new)).astype(np.int64)
        elif name == "encoder_attention_mask":
            v = np.ones((rows, encoder_len), np.int64)
            v[0, -2:] = 0
            feeds[name] = v
        elif name == "decoder_attention_mask":
            v = np.ones((rows, past + new), np.int64)
            if padded and past >= 2:
                v[0, :2] = 0
            feeds[name] = v
        elif name == "encoder_hidden_states":
            feeds[name] = rng.standard_normal((rows, encoder_len, shape[2])).astype(np.float32)
        elif name.startswith("past_key_values."):
            length = past if ".decoder." in name else encoder_len
            feeds[name] = rng.standard_normal((rows, shape[1], length, shape[3])).astype(np.float32)
        else:
            raise SystemExit(f"cannot make a random value for input {name}")
    return feeds


def run_in_place(session, feeds, past, capacity):
    """Runs the rewritten graph on `feeds` (the original's), the self-attention cache in buffers of
    `capacity` positions, NaN beyond the used ones, each present bound to its past. Returns logits and
    the buffers."""
    import onnxruntime as ort

    binding = session.io_binding()
    arrays, values = {}, []  # the OrtValues share the arrays' memory (and do not keep them alive)
    for name, value in feeds.items():
        if name.startswith("past_key_values.") and ".decoder." in name:
            rows, heads, _, dim = value.shape
            present = name.replace("past_key_values.", "present.")
            arrays[present] = np.full((rows, heads, capacity, dim), np.nan, np.float32)
            arrays[present][:, :, :past] = value
            values.append(ort.OrtValue.ortvalue_from_numpy(arrays[present]))
            binding.bind_ortvalue_input(name, values[-1])
            binding.bind_ortvalue_output(present, values[-1])
        else:
            binding.bind_cpu_input(name, value)
    binding.bind_cpu_input(PAST_LENGTH, np.array([past], np.int64))
    binding.bind_output("logits")
    session.run_with_iobinding(binding)
    return binding.get_outputs()[len(values)].numpy(), arrays


def check(original, rewritten, seed=0):
    import onnx

    quantized = any(n.op_type in QUANTIZED_OPS for n in onnx.load(str(original), load_external_data=False).graph.node)
    tolerance = QUANTIZED_TOLERANCE if quantized else TOLERANCE
    a, b = graph_rewrite.cpu_sessions(original, rewritten)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for rows, past, new, padded in ((1, 0, 1, False), (2, 0, 4, False), (2, 5, 1, False), (3, 9, 1, True), (1, 1, 1, False)):
        feeds = random_feeds(a, rows, past, new, rng, padded)
        expected = dict(zip([o.name for o in a.get_outputs()], a.run(None, feeds)))
        logits, caches = run_in_place(b, feeds, past, past + new + 3)
        pairs = [("logits", expected["logits"], logits)]
        pairs += [(name, expected[name], buf[:, :, :past + new]) for name, buf in caches.items()]
        for name, x, y in pairs:
            if x.shape != y.shape:
                raise SystemExit(f"{rewritten}: {name} is {y.shape}, the original's {x.shape}")
            diff = float(np.abs(x.astype(np.float64) - y).max()) / max(1.0, float(np.abs(x).max()))
            if not np.isfinite(diff) or diff > tolerance:
                raise SystemExit(f"{rewritten}: {name} differs from the original's by {diff:.3g} > {tolerance} "
                                 f"(rows {rows}, past {past}, new {new})")
            if name == "logits" and quantized and not np.array_equal(x.argmax(-1), y.argmax(-1)):
                raise SystemExit(f"{rewritten}: another most likely token than the original's (rows {rows}, past {past}, "
                                 f"new {new})")
            worst = max(worst, diff)
    kind = "quantized activations: same argmax, " if quantized else ""
    return f"checked: past 0-9, 1-4 new positions, padded rows: {kind}within {worst:.2g} (relative) of the original"


def apply(model_dir, graph=GRAPH, out=None, run_check=True):
    """Rewrites MODEL_DIR/graph into out (default: in place); returns a note. Leaves the graph unchanged
    and returns why when it cannot."""
    return graph_rewrite.rewrite_file(model_dir, graph, out, run_check, rewrite, check, Refused, "not in place",
                                      ".in-place")


def main():
    graph_rewrite.run_cli(__doc__, apply, "not in place")


if __name__ == "__main__":
    main()
