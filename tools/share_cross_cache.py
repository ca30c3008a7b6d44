#!/usr/bin/env python3
"""Lets decoder_with_past_model.onnx read one cross-attention cache row for several decoder rows:
the beams of one input (beam search keeps `num_beams` rows per input, all attending to the same
encoder output) then share one copy of its keys and values instead of each holding its own.

    python tools/share_cross_cache.py MODEL_DIR [--graph FILE] [--out FILE] [--check]

The `past_key_values.*.encoder.{key,value}` inputs get the batch dimension `encoder_batch_size`;
every other input keeps `batch_size`, which must be a whole multiple k of it, the k rows of one
cache row consecutive (duet feeds k = 1 whenever the rows do not group evenly). Each MatMul that
reads a cross-attention key or value is rewritten with numpy broadcasting, no copy:

    A [B*k, H, S, X] -> Reshape [B, k, H, S, X]      cache [B, H, ., .] -> Unsqueeze [B, 1, H, ., .]
    MatMul -> [B, k, H, S, Y] -> Reshape [B*k, H, S, Y]

so the graph computes the same dot products in the same order (the check compares bit for bit
where the kernels allow and within 1e-5 otherwise). Reads of the cache's shape other than its
batch dimension are kept; a graph whose cross-attention inputs feed anything else (another use of
the batch dimension, an op that is not a Transpose, a constant scaling or a MatMul) is refused and
left unchanged. The graph's weights are not touched (external data stays where it is). Idempotent.

--check runs both graphs with ONNX Runtime on random inputs: the original with every cache row
repeated k times (k = 1, 2, 3) against the new graph with each cache row once; outputs must match.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import graph_rewrite  # noqa: E402

GRAPH = "decoder_with_past_model.onnx"
ENCODER_BATCH = "encoder_batch_size"
PASS_THROUGH = {"Transpose", "Mul", "Div", "Cast"}


def cross_inputs(graph):
    return [i for i in graph.input if i.name.startswith("past_key_values.") and ".encoder." in i.name]


def is_shared(graph):
    return any(i.type.tensor_type.shape.dim[0].dim_param == ENCODER_BATCH for i in cross_inputs(graph))


def constant_value(name, inits, producers):
    from onnx import numpy_helper

    if name in inits:
        return numpy_helper.to_array(inits[name])
    node = producers.get(name)
    if node is not None and node.op_type == "Constant":
        return numpy_helper.to_array(node.attribute[0].t)
    return None


def plan(graph):
    """The MatMuls to rewrite as (node, index of the cache-side input, kind), and the chains' Transposes
    to widen; raises ValueError when a cross-attention input has a use this rewrite does not know."""
    inits = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    consumers = {}
    for n in graph.node:
        for k, i in enumerate(n.input):
            consumers.setdefault(i, []).append((n, k))
    graph_outputs = {o.name for o in graph.output}
    matmuls, transposes = [], []
    for inp in cross_inputs(graph):
        kind = inp.name.rsplit(".", 1)[1]
        frontier = [inp.name]
        while frontier:
            name = frontier.pop()
            if name in graph_outputs:
                raise ValueError(f"{inp.name} reaches the graph output {name}")
            for node, k in consumers.get(name, []):
                if node.op_type == "Shape" and name != inp.name:
                    raise ValueError(f"the shape of {name}, computed from {inp.name}, is read by {node.name}")
                if node.op_type == "Shape":
                    for g, _ in consumers.get(node.output[0], []):
                        index = constant_value(g.input[1], inits, producers) if g.op_type == "Gather" else None
                        if index is None or index.ndim != 0 or int(index) in (0, -4):
                            raise ValueError(f"{inp.name}'s shape is read by {g.op_type} {g.name}, not for one non-batch dimension")
                elif node.op_type == "MatMul" and k == 1:
                    matmuls.append((node, kind))
                elif node.op_type in PASS_THROUGH and k == 0:
                    if node.op_type in ("Mul", "Div"):
                        scale = constant_value(node.input[1], inits, producers)
                        if scale is None or scale.size != 1:
                            raise ValueError(f"{inp.name} is scaled by {node.name} with a non-constant")
                    if node.op_type == "Transpose":
                        perm = [list(a.ints) for a in node.attribute if a.name == "perm"]
                        if not perm or perm[0][0] != 0:
                            raise ValueError(f"{node.name} moves {inp.name}'s batch dimension")
                        transposes.append(node)
                    frontier.append(node.output[0])
                else:
                    raise ValueError(f"{inp.name} feeds {node.op_type} {node.name} (input {k})")
    if not matmuls:
        raise ValueError("no MatMul reads a cross-attention input")
    return matmuls, transposes


def share(model):
    """Rewrites `model` (an onnx ModelProto of a with-past decoder) in place; returns a note."""
    from onnx import helper, TensorProto

    g = model.graph
    if is_shared(g):
        return "already shares the cross-attention cache"
    inputs = cross_inputs(g)
    if not inputs:
        raise ValueError("the graph takes no cross-attention cache")
    matmuls, transposes = plan(g)
    ids = next(i for i in g.input if i.name == "input_ids")
    batch = ids.type.tensor_type.shape.dim[0].dim_param
    for inp in inputs:
        dim = inp.type.tensor_type.shape.dim[0]
        if dim.dim_param != batch:
            raise ValueError(f"{inp.name}'s batch dimension is {dim.dim_param or dim.dim_value}, not input_ids' {batch}")
        dim.dim_param = ENCODER_BATCH

    new = []
    p = "/share_cross/"

    def const(name, values):
        new.append(helper.make_node("Constant", [], [p + name],
                                    value=helper.make_tensor(p + name, TensorProto.INT64, [len(values)], values)))
        return p + name

    def shape_slice(src, start, end, name):
        new.append(helper.make_node("Shape", [src], [p + name], start=start, end=end))
        return p + name

    key0 = next(i.name for i in inputs if i.name.endswith(".key"))
    enc_batch = shape_slice(key0, 0, 1, "encoder_batch")
    heads = shape_slice(key0, 1, 2, "heads")
    enc_len = shape_slice(key0, 2, 3, "encoder_len")
    head_dim = shape_slice(key0, 3, 4, "head_dim")
    dec_len = shape_slice("input_ids", 1, 2, "decoder_len")
    minus_one = const("minus_one", [-1])
    one = const("axis_one", [1])

    def concat(name, parts):
        new.append(helper.make_node("Concat", parts, [p + name], axis=0))
        return p + name

    # A: [B*k, H, S, X] -> [B, k, H, S, X]; out: [B, k, H, S, Y] -> [B*k, H, S, Y]. The key side's
    # product is the scores (X = head_dim, Y = encoder length), the value side's the context.
    fold = {"key": concat("fold_query", [enc_batch, minus_one, heads, dec_len, head_dim]),
            "value": concat("fold_scores", [enc_batch, minus_one, heads, dec_len, enc_len])}
    unfold = {"key": concat("unfold_scores", [minus_one, heads, dec_len, enc_len]),
              "value": concat("unfold_context", [minus_one, heads, dec_len, head_dim])}
    for inp in inputs:
        widened = p + inp.name + "/unsqueezed"
        new.append(helper.make_node("Unsqueeze", [inp.name, one], [widened]))
        for n in g.node:
            for k, i in enumerate(n.input):
                if i == inp.name and n.op_type != "Shape":
                    n.input[k] = widened
    for t in transposes:
        perm = next(a for a in t.attribute if a.name == "perm")
        old = list(perm.ints)
        perm.ints[:] = [0, 1] + [d + 1 for d in old[1:]]
    after = {}
    for m, kind in matmuls:
        a, out = m.input[0], m.output[0]
        folded, product = f"{p}{m.name}/folded", f"{p}{m.name}/product"
        before = helper.make_node("Reshape", [a, fold[kind]], [folded])
        m.input[0], m.output[0] = folded, product
        after[id(m)] = (before, helper.make_node("Reshape", [product, unfold[kind]], [out]))
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(new)
    for n in nodes:
        if id(n) in after:
            before, back = after[id(n)]
            g.node.extend([before, n, back])
        else:
            g.node.append(n)
    return f"{len(matmuls)} cross-attention MatMuls read the cache once per {ENCODER_BATCH} row"


def check(original, shared, seed=0):
    """Max |difference| of every output over k = 1, 2, 3; exits when the graphs disagree."""
    a, b = graph_rewrite.cpu_sessions(original, shared)
    if any("bfloat16" in i.type for i in a.get_inputs()):
        raise SystemExit(f"{shared}: bfloat16 inputs cannot be made with numpy to check it")
    rng = np.random.default_rng(seed)
    half = any("float16" in i.type for i in a.get_inputs())
    worst = 0.0
    for k in (1, 2, 3):
        rows, enc_len, past = 2, 7, 5
        feeds_a, feeds_b = {}, {}
        for i in a.get_inputs():
            dims = []
            for d in i.shape:
                if isinstance(d, int):
                    dims.append(d)
                elif "encoder_sequence" in d:
                    dims.append(enc_len)
                elif d.startswith("past_decoder_sequence_length"):
                    dims.append(past)
                elif "decoder_sequence" in d:
                    dims.append(1)
                elif "past" in d and "+" in d:
                    dims.append(past + 1)
                else:
                    dims.append(rows * k)
            if i.name == "input_ids":
                v = rng.integers(0, 50, dims).astype(np.int64)
            elif i.name == "encoder_attention_mask":
                v = np.ones(dims, np.int64)
                v[0, -2:] = 0
            elif "mask" in i.name:
                v = np.ones(dims, np.int64)
            else:
                v = rng.standard_normal(dims).astype(np.float16 if "float16" in i.type else np.float32)
            if ".encoder." in i.name:
                v = v[::k].copy()
                feeds_b[i.name] = v
                v = np.repeat(v, k, axis=0)
            feeds_a[i.name] = v
            feeds_b.setdefault(i.name, v)
        try:
            out_a, out_b = a.run(None, feeds_a), b.run(None, feeds_b)
        except Exception as e:  # noqa: BLE001 - a graph this machine cannot run is not checked, so not shared
            raise SystemExit(f"{shared}: cannot run it here to check it: {str(e)[:200]}") from e
        for o, x, y in zip(a.get_outputs(), out_a, out_b):
            if x.shape != y.shape:
                raise SystemExit(f"{shared}: {o.name} is {y.shape}, the original's {x.shape} (k={k})")
            # Float32 kernels give the same sums; half-precision MatMuls may round another shape differently.
            tolerance = 2e-3 * max(1.0, float(np.abs(x).max())) if half else 1e-5
            diff = float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max())
            if diff > tolerance:
                raise SystemExit(f"{shared}: {o.name} differs from the original's by {diff:.3g} > {tolerance:.3g} (k={k})")
            worst = max(worst, diff)
    return f"checked: k = 1, 2, 3 rows per cache row give the original's outputs (max difference {worst:.2g})"


def apply(model_dir, graph=GRAPH, out=None, run_check=True):
    """Rewrites MODEL_DIR/graph into out (default: in place); returns a note. Leaves the graph
    unchanged and returns why when it cannot."""
    return graph_rewrite.rewrite_file(model_dir, graph, out, run_check, share, check, ValueError, "not shared", ".sharing")


def main():
    graph_rewrite.run_cli(__doc__, apply, "not shared")


if __name__ == "__main__":
    main()
