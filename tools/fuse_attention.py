#!/usr/bin/env python3
"""Fuses the self-attention of decoder_with_past_model.onnx into ONNX Runtime's MultiHeadAttention
(com.microsoft), with the query, key and value projections packed into one MatMul.

    python tools/fuse_attention.py MODEL_DIR [--graph FILE] [--out FILE] [--check]

Optimum exports each decoder layer's self-attention as some twenty nodes: three projection
MatMuls (and their bias Adds), Reshape/Transpose pairs to heads, the cache Concats, the scores
MatMul with its scaling Muls, the additive terms (causal mask, T5's relative position bias, the
self-attention mask tools/decoder_mask.py adds), Softmax, the context MatMul and the way back.
Per layer that becomes:

    MatMul(x, [Wq | Wk | Wv]) -> Split -> MultiHeadAttention(q, k, v, bias = [bq | bk | bv],
        attention_bias = the sum of the additive terms, past_key, past_value)
        -> context, present.N.decoder.key, present.N.decoder.value

so a step reads one larger matrix instead of three, and the cache is appended inside the kernel.
The scale is the product of the scaling constants found on the query and key sides (1 for T5).
The graph's inputs and outputs keep their names, shapes and meaning: duet runs it with no special
case. Every layer must match the pattern, or the graph is left unchanged and the reason given.
Cross-attention is not fused: tools/share_cross_cache.py lets the beams of one input read one
cache row there, which MultiHeadAttention's key/value batch cannot express.

Only float32 graphs are fused (the kernels this machine can check). --check runs both graphs with
ONNX Runtime on random inputs (several past lengths, 0 included, padded and masked rows): every
output must match the original's within 1e-4 relative. Weights stay in external data when they
were (rewritten into <graph>_data).
"""
import os
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import graph_rewrite  # noqa: E402

GRAPH = "decoder_with_past_model.onnx"
MS_DOMAIN = "com.microsoft"
TOLERANCE = 1e-4


class Mismatch(ValueError):
    pass


class Graph:
    def __init__(self, graph):
        self.g = graph
        self.inits = {t.name: t for t in graph.initializer}
        self.producers = {o: n for n in graph.node for o in n.output}
        self.consumers = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def const(self, name):
        from onnx import numpy_helper

        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producers.get(name)
        if node is not None and node.op_type == "Constant" and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def weight(self, name):
        """The initializer `name` is, through Identity nodes (Optimum ties equal weights that way); or None."""
        node = self.producers.get(name)
        while node is not None and node.op_type == "Identity":
            name = node.input[0]
            node = self.producers.get(name)
        return name if name in self.inits else None

    def float_cast(self, node):
        return node.op_type == "Cast" and [a.i for a in node.attribute if a.name == "to"] == [1]

    def producer(self, name, op):
        node = self.producers.get(name)
        if node is None or node.op_type != op:
            raise Mismatch(f"{name} is not made by a {op}")
        return node

    def only_consumer(self, name, op=None):
        users = [n for n in self.consumers.get(name, []) if n.op_type != "Shape"]
        if len(users) != 1 or (op and users[0].op_type != op):
            raise Mismatch(f"{name} is not read by one {op or 'node'} alone")
        return users[0]

    def perm(self, node):
        return [list(a.ints) for a in node.attribute if a.name == "perm"][0]

    def scalar_scale(self, node):
        """The constant of a Mul (or 1/constant of a Div) by a scalar; None when not such a node."""
        if node.op_type not in ("Mul", "Div"):
            return None
        value = self.const(node.input[1])
        if value is None or value.size != 1:
            return None
        return float(value.reshape(())) if node.op_type == "Mul" else 1.0 / float(value.reshape(()))


def projection(G, name):
    """name = Transpose(Reshape(MatMul(x, W) [+ b]), perm 0213): (x, W, b or None)."""
    t = G.producer(name, "Transpose")
    if G.perm(t) != [0, 2, 1, 3]:
        raise Mismatch(f"{t.name} is not a transpose to heads")
    r = G.producer(t.input[0], "Reshape")
    node = G.producers.get(r.input[0])
    bias = None
    if node is not None and node.op_type == "Add":
        side = 0 if G.weight(node.input[0]) else 1 if G.weight(node.input[1]) else None
        if side is None:
            raise Mismatch(f"{node.name}: a projection bias that is not a weight")
        bias, node = G.weight(node.input[side]), G.producers.get(node.input[1 - side])
    if node is None or node.op_type != "MatMul" or G.weight(node.input[1]) is None:
        raise Mismatch(f"{r.input[0]} is not a projection by a constant weight")
    return node.input[0], G.weight(node.input[1]), bias


def scaled(G, name):
    """Follows optional scalar Mul/Div nodes back from name: (source, product of the scales)."""
    scale, node = 1.0, G.producers.get(name)
    while node is not None and G.scalar_scale(node) is not None:
        scale *= G.scalar_scale(node)
        name = node.input[0]
        node = G.producers.get(name)
    return name, scale


def plan_layer(G, layer):
    """What to replace for self-attention layer `layer`: a dict, or Mismatch."""
    present_k, present_v = f"present.{layer}.decoder.key", f"present.{layer}.decoder.value"
    past_k, past_v = f"past_key_values.{layer}.decoder.key", f"past_key_values.{layer}.decoder.value"
    ck, cv = G.producer(present_k, "Concat"), G.producer(present_v, "Concat")
    if list(ck.input)[:1] != [past_k] or list(cv.input)[:1] != [past_v] or len(ck.input) != 2 or len(cv.input) != 2:
        raise Mismatch(f"layer {layer}: the cache Concats do not append to the past")
    xk, wk, bk = projection(G, ck.input[1])
    xv, wv, bv = projection(G, cv.input[1])
    # the scores: MatMul(q [* s], Transpose(present_k) [* s])
    kt = [n for n in G.consumers.get(present_k, []) if n.op_type == "Transpose"]
    if len(kt) != 1 or G.perm(kt[0]) != [0, 1, 3, 2]:
        raise Mismatch(f"layer {layer}: {present_k} is not transposed once for the scores")
    node, k_scale = kt[0], 1.0
    while True:
        node = G.only_consumer(node.output[0])
        if G.scalar_scale(node) is None:
            break
        k_scale *= G.scalar_scale(node)
    scores = node
    if scores.op_type != "MatMul":
        raise Mismatch(f"layer {layer}: the keys feed {scores.op_type}, not the scores MatMul")
    q_src, q_scale = scaled(G, scores.input[0])
    xq, wq, bq = projection(G, q_src)
    if not xq == xk == xv:
        raise Mismatch(f"layer {layer}: query, key and value are projections of different inputs")
    terms, node = [], scores
    while True:  # additive terms, and Casts to float32 (T5 takes the softmax in float32: no-ops here)
        nxt = G.only_consumer(node.output[0])
        if nxt.op_type == "Add":
            terms.append(nxt.input[1] if nxt.input[0] == node.output[0] else nxt.input[0])
        elif not G.float_cast(nxt):
            break
        node = nxt
    softmax = nxt
    axis = [a.i for a in softmax.attribute if a.name == "axis"]
    if softmax.op_type != "Softmax" or axis not in ([-1], [3]):
        raise Mismatch(f"layer {layer}: the scores end in {softmax.op_type}, not a Softmax over the keys")
    weights = softmax.output[0]
    while G.float_cast(G.only_consumer(weights)):
        weights = G.only_consumer(weights).output[0]
    context = G.only_consumer(weights, "MatMul")
    if list(context.input) != [weights, present_v]:
        raise Mismatch(f"layer {layer}: the attention weights do not multiply {present_v}")
    t = G.only_consumer(context.output[0], "Transpose")
    if G.perm(t) != [0, 2, 1, 3]:
        raise Mismatch(f"layer {layer}: the context is not transposed back from heads")
    back = G.only_consumer(t.output[0], "Reshape")
    shapes = [n for n in G.consumers.get(present_k, []) + G.consumers.get(present_v, []) if n.op_type == "Shape"]
    return {"shapes": shapes, "x": xq, "weights": (wq, wk, wv), "biases": (bq, bk, bv), "scale": q_scale * k_scale,
            "terms": terms, "past": (past_k, past_v), "present": (present_k, present_v), "context": back.output[0],
            "replaced": [ck, cv, back]}


def layers_of(graph):
    names = {o.name for o in graph.output}
    n = 0
    while f"present.{n}.decoder.key" in names:
        n += 1
    return n


def fuse(model):
    """Rewrites `model` (a with-past decoder's ModelProto, weights loaded) in place; returns a note."""
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    if any(n.op_type == "MultiHeadAttention" for n in g.node):
        return "already fused"
    if any(i.type.tensor_type.elem_type != TensorProto.FLOAT for i in g.input if i.name.startswith("past_key_values.")):
        raise Mismatch("only float32 graphs are fused")
    count = layers_of(g)
    if not count:
        raise Mismatch("the graph returns no self-attention cache")
    G = Graph(g)
    plans = [plan_layer(G, i) for i in range(count)]
    heads = {o.name: o.type.tensor_type.shape.dim[1].dim_value for o in g.output}
    replaced = {id(n) for p in plans for n in p["replaced"] + p["shapes"]}
    new_nodes, new_inits = [], []
    for i, p in enumerate(plans):
        num_heads = heads[p["present"][0]]
        if not num_heads:
            raise Mismatch(f"layer {i}: the number of heads is not fixed in the graph")
        pre = f"/duet_fused/layer{i}/"
        ws = [numpy_helper.to_array(G.inits[w]) for w in p["weights"]]
        if len({w.shape for w in ws}) != 1 or ws[0].ndim != 2:
            raise Mismatch(f"layer {i}: the projections' weights differ in shape")
        width = ws[0].shape[1]
        new_inits.append(numpy_helper.from_array(np.concatenate(ws, axis=1), pre + "qkv_weight"))
        new_inits.append(numpy_helper.from_array(np.array([width] * 3, np.int64), pre + "qkv_split"))
        new_nodes.append(helper.make_node("MatMul", [p["x"], pre + "qkv_weight"], [pre + "qkv"], name=pre + "qkv_proj"))
        new_nodes.append(helper.make_node("Split", [pre + "qkv", pre + "qkv_split"], [pre + "q", pre + "k", pre + "v"],
                                          axis=-1, name=pre + "split"))
        bias = ""
        if any(b is not None for b in p["biases"]):
            parts = [numpy_helper.to_array(G.inits[b]) if b is not None else np.zeros(width, np.float32)
                     for b in p["biases"]]
            new_inits.append(numpy_helper.from_array(np.concatenate(parts).astype(np.float32), pre + "qkv_bias"))
            bias = pre + "qkv_bias"
        attention_bias = ""
        if p["terms"]:
            attention_bias = p["terms"][0]
            for k, term in enumerate(p["terms"][1:]):
                out = f"{pre}attention_bias_{k}"
                new_nodes.append(helper.make_node("Add", [attention_bias, term], [out], name=out))
                attention_bias = out
        new_nodes.extend(present_shapes(p, pre))
        new_nodes.append(helper.make_node(
            "MultiHeadAttention",
            [pre + "q", pre + "k", pre + "v", bias, "", attention_bias, *p["past"]],
            [p["context"], *p["present"]], domain=MS_DOMAIN, name=pre + "attention",
            num_heads=num_heads, scale=float(p["scale"])))
    kept = [n for n in g.node if id(n) not in replaced]
    del g.node[:]
    g.node.extend(kept)
    g.initializer.extend(new_inits)
    insert_in_order(g, new_nodes)
    prune(g)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return f"{count} self-attention layers -> MultiHeadAttention (packed Q/K/V projection)"


def present_shapes(p, pre):
    """Shape nodes that read a present cache (T5's position bias and the causal mask take its length)
    would make a cycle through the fused node: the same values from the past and the new input."""
    from onnx import helper

    past_k, x = p["past"][0], p["x"]
    parts = [pre + "present_shape/" + s for s in ("head", "past", "new", "length", "tail", "full")]
    nodes = [helper.make_node("Shape", [past_k], [parts[0]], start=0, end=2),
             helper.make_node("Shape", [past_k], [parts[1]], start=2, end=3),
             helper.make_node("Shape", [x], [parts[2]], start=1, end=2),
             helper.make_node("Add", [parts[1], parts[2]], [parts[3]]),
             helper.make_node("Shape", [past_k], [parts[4]], start=3, end=4),
             helper.make_node("Concat", [parts[0], parts[3], parts[4]], [parts[5]], axis=0)]
    for k, old in enumerate(p["shapes"]):
        attrs = {a.name: a.i for a in old.attribute}
        start, end = attrs.get("start", 0), attrs.get("end")
        if start == 0 and end is None:
            nodes.append(helper.make_node("Identity", [parts[5]], [old.output[0]]))
            continue
        consts = [f"{pre}present_shape/{k}/{n}" for n in ("start", "end")]
        nodes.append(helper.make_node("Constant", [], [consts[0]], value_ints=[start]))
        nodes.append(helper.make_node("Constant", [], [consts[1]], value_ints=[end if end is not None else 4]))
        nodes.append(helper.make_node("Slice", [parts[5], *consts], [old.output[0]]))
    return nodes


def insert_in_order(g, new_nodes):
    """Adds new_nodes and sorts the graph topologically (inputs, initializers and Constants first)."""
    nodes = list(g.node) + new_nodes
    available = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    producers = {}
    for n in nodes:
        for o in n.output:
            producers[o] = n
    done, ordered, visiting = set(), [], set()

    def visit(n):
        if id(n) in done:
            return
        if id(n) in visiting:
            raise Mismatch(f"a cycle through {n.name}")
        visiting.add(id(n))
        for i in n.input:
            if i not in available and i in producers:
                visit(producers[i])
        visiting.discard(id(n))
        done.add(id(n))
        ordered.append(n)

    for n in nodes:
        visit(n)
    del g.node[:]
    g.node.extend(ordered)


def prune(g):
    """Drops nodes that no graph output depends on, and initializers nothing reads."""
    producers = {o: n for n in g.node for o in n.output}
    needed, stack = set(), [o.name for o in g.output]
    live = set()
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producers.get(name)
        if node is not None and id(node) not in live:
            live.add(id(node))
            stack.extend(i for i in node.input if i)
    kept = [n for n in g.node if id(n) in live]
    del g.node[:]
    g.node.extend(kept)
    used = {i for n in g.node for i in n.input}
    inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)


def feeds_for(session, rows, past, rng, padded):
    feeds = {}
    for i in session.get_inputs():
        dims = []
        for d in i.shape:
            if isinstance(d, int):
                dims.append(d)
            elif "encoder_sequence" in d:
                dims.append(7)
            elif d.startswith("past_decoder_sequence_length") and "+" in d:
                dims.append(past + 1)
            elif d.startswith("past_decoder_sequence_length"):
                dims.append(past)
            elif "decoder_sequence" in d:
                dims.append(1)
            else:
                dims.append(rows)
        if i.name == "input_ids":
            v = rng.integers(0, 50, dims).astype(np.int64)
        elif i.name == "encoder_attention_mask":
            v = np.ones(dims, np.int64)
            v[0, -2:] = 0
        elif i.name == "decoder_attention_mask":
            v = np.ones(dims, np.int64)
            if padded and past >= 2:
                v[0, :2] = 0
        elif "mask" in i.name:
            v = np.ones(dims, np.int64)
        else:
            v = rng.standard_normal(dims).astype(np.float32)
        feeds[i.name] = v
    return feeds


def check(original, fused, seed=0):
    """Max relative difference of every output; exits when the graphs disagree."""
    a, b = graph_rewrite.cpu_sessions(original, fused)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for rows, past, padded in ((1, 0, False), (2, 5, False), (3, 9, True), (1, 1, False)):
        feeds = feeds_for(a, rows, past, rng, padded)
        out_a = a.run(None, feeds)
        out_b = b.run(None, feeds)  # the fused graph keeps every input
        for o, x, y in zip(a.get_outputs(), out_a, out_b):
            if x.shape != y.shape:
                raise SystemExit(f"{fused}: {o.name} is {y.shape}, the original's {x.shape}")
            diff = float(np.abs(x.astype(np.float64) - y).max()) / max(1.0, float(np.abs(x).max()))
            if diff > TOLERANCE:
                raise SystemExit(f"{fused}: {o.name} differs from the original's by {diff:.3g} > {TOLERANCE} "
                                 f"(rows {rows}, past {past})")
            worst = max(worst, diff)
    return f"checked: past 0-9, padded rows: outputs within {worst:.2g} (relative) of the original's"


def has_external_data(model):
    from onnx.external_data_helper import uses_external_data

    return any(uses_external_data(t) for t in model.graph.initializer)


def apply(model_dir, graph=GRAPH, out=None, run_check=True):
    """Fuses MODEL_DIR/graph into out (default: in place); returns a note. Leaves the graph unchanged
    and returns why when it cannot."""
    import onnx

    model_dir = Path(model_dir)
    src = model_dir / graph
    dst = Path(out) if out else src
    model = onnx.load(str(src), load_external_data=False)
    external = has_external_data(model)
    onnx.load_external_data_for_model(model, str(src.parent))
    try:
        note = fuse(model)
    except Mismatch as e:
        return f"not fused: {e}"
    if note.startswith("already"):
        return note
    work = dst.parent / f".fusing-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        tmp = work / dst.name
        if external:
            onnx.save(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                      location=dst.name + "_data", size_threshold=1024)
        else:
            onnx.save(model, str(tmp))
        if run_check:
            note += "; " + check(src, tmp)
        for f in work.iterdir():
            f.chmod(0o644)
            os.replace(f, dst.parent / f.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return note


def main():
    graph_rewrite.run_cli(__doc__, apply, "not fused")


if __name__ == "__main__":
    main()
