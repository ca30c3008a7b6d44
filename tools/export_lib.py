"""Helpers of tools/export_model.py: transformer fusions, weight-only quantization, re-merging the
decoders, a numpy greedy loop over the ONNX graphs (also used by tools/bench/bench_ort_loop.py), the
agreement check against the fp32 export and duet_export.json. Imports nothing heavy at module level.
"""
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ENCODER, DECODER, DECODER_PAST = "encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx"
SPLIT = [ENCODER, DECODER, DECODER_PAST]
MERGED = "decoder_model_merged.onnx"
FORMAT = 1
SAMPLE_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "translate English to German: The house is wonderful and the garden is large.",
    "summarize: The city council approved a new budget for public libraries on Tuesday, after a long debate.",
    "Scientists discovered a new species of frog in the rainforest near the river.",
]
N_VOCAB_SAMPLES = 4  # plus this many inputs drawn from the tokenizer's vocabulary
VERIFY_NEW_TOKENS = 64


def versions():
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for p in ["torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "tokenizers"]:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    return out


# --------------------------------------------------------------------------------------------------
# Graph transformations (each on the split graphs; the merged decoder is re-made from the pair)
# --------------------------------------------------------------------------------------------------
def fusion_params(config):
    """(model_type for onnxruntime.transformers.optimizer, num_heads, hidden_size), or None."""
    mt = config.get("model_type")
    if mt in ("t5", "mt5"):
        return "t5", config["num_heads"], config["d_model"]
    if mt in ("bart", "mbart", "marian", "pegasus"):
        return "bart", config["decoder_attention_heads"], config["d_model"]
    return None


def random_feeds(path, config, rng):
    """Random inputs for one graph (batch 2, 7 encoder positions, 5 past positions, 1 new position)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    dims = {"batch_size": 2, "encoder_batch_size": 2, "encoder_sequence_length": 7, "encoder_sequence_length_out": 7,
            "past_decoder_sequence_length": 5, "decoder_sequence_length": 1}
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else dims.get(d, 3) for d in i.shape]
        if i.name in ("input_ids", "decoder_input_ids"):
            feeds[i.name] = rng.integers(3, config.get("vocab_size", 100) - 1, shape).astype(np.int64)
        elif "mask" in i.name:
            feeds[i.name] = np.ones(shape, np.int64)
        elif i.type == "tensor(bool)":
            feeds[i.name] = np.ones(shape, bool)
        else:
            feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def run_graph(path, feeds):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def optimize(out, config, tol=1e-3):
    """Fuses each split graph in place (for the CPU execution provider) where that works and changes no
    output by more than tol. Returns {file: note}."""
    from onnxruntime.transformers import optimizer

    if "t5" in optimizer.MODEL_TYPES:
        # The T5 attention fusion needs RelativePositionBias, a contrib op with no CPU kernel (the graph
        # would not load): fuse without it, which leaves the (Skip)SimplifiedLayerNormalization fusions.
        optimizer.MODEL_TYPES["t5"][0].preprocess = lambda self: self.adjust_reshape_and_expand()
    params = fusion_params(config)
    if params is None:
        return {f: f"not optimized: no fusions for model_type {config.get('model_type')}" for f in SPLIT}
    model_type, num_heads, hidden = params
    notes, rng = {}, np.random.default_rng(0)
    for f in SPLIT:
        path = out / f
        tmp = path.with_suffix(".opt.onnx")
        try:
            m = optimizer.optimize_model(str(path), model_type=model_type, num_heads=num_heads, hidden_size=hidden)
            fused = {k: v for k, v in m.get_fused_operator_statistics().items() if v}
            m.save_model_to_file(str(tmp))
            if not fused:
                notes[f] = "not optimized: no fusion applied"
                continue
            feeds = random_feeds(path, config, rng)
            ref, new = run_graph(path, feeds), run_graph(tmp, feeds)
            if set(ref) != set(new):
                notes[f] = "not optimized: the fused graph's outputs differ in name"
                continue
            diff = max(float(np.abs(ref[k] - new[k]).max()) for k in ref)
            if diff > tol:
                notes[f] = f"not optimized: outputs changed by {diff:.3g} > {tol}"
                continue
            tmp.replace(path)
            notes[f] = f"fused {fused} (max output change {diff:.2g})"
        except Exception as e:  # noqa: BLE001 - any failure keeps the original graph
            notes[f] = f"not optimized: {type(e).__name__}: {str(e)[:200]}"
        finally:
            tmp.unlink(missing_ok=True)
    return notes


def materialize_transposed_weights(model):
    """MatMul(x, Transpose(W)) with W an initializer (a tied LM head: Optimum exports lm_head as the shared
    embedding, transposed) -> MatMul(x, W^T stored as an initializer), so that the quantizer sees a constant
    weight. ONNX Runtime constant-folds that Transpose at load anyway. Returns the weights so treated."""
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consumers = {}
    for n in g.node:
        for k, i in enumerate(n.input):
            consumers.setdefault(i, []).append((n, k))
    done = []
    for n in list(g.node):
        w = inits.get(n.input[0]) if n.op_type == "Transpose" and n.input else None
        perm = [list(a.ints) for a in n.attribute if a.name == "perm"]
        if w is None or len(w.dims) != 2 or perm not in ([], [[1, 0]]):
            continue
        if not all(c.op_type == "MatMul" and k == 1 for c, k in consumers.get(n.output[0], [])):
            continue
        g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(w).T.copy(), n.output[0]))
        g.node.remove(n)
        done.append(w.name)
    return done


def quantize(out, bits, block_size, accuracy_level=None, symmetric=False, graphs=tuple(SPLIT)):
    """Weight-only MatMulNBits quantization (blockwise along K; asymmetric, with a zero point per block,
    unless `symmetric`) of each of `graphs`, in place."""
    import logging

    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    notes = {}
    for f in graphs:
        model = onnx.load(str(out / f))
        untied = materialize_transposed_weights(model)
        q = MatMulNBitsQuantizer(model, bits=bits, block_size=block_size, is_symmetric=symmetric,
                                 accuracy_level=accuracy_level)
        q.process()
        n = sum(1 for node in q.model.model.graph.node if node.op_type == "MatMulNBits")
        left = sum(1 for node in q.model.model.graph.node if node.op_type == "MatMul")
        q.model.save_model_to_file(str(out / f), use_external_data_format=False)
        notes[f] = (f"{n} MatMul -> MatMulNBits ({bits} bits, block {block_size}, "
                    f"{'symmetric' if symmetric else 'asymmetric'}); {left} MatMul left (no constant "
                    f"weight)" + (f"; {', '.join(untied)} stored transposed for MatMul" if untied else ""))
    return notes


def quantize_dynamic_int8(out, f):
    """ONNX Runtime's dynamic quantization of one graph, in place: each MatMul with a constant weight becomes
    MatMulInteger on int8 weights (a scale per output channel) and activations quantized to uint8 at run time
    (one scale per tensor, DynamicQuantizeLinear). Integer GEMMs: faster than MatMulNBits where a MatMul has
    many rows (the encoder: batch x tokens), coarser than its per-block activations."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(out / f))
    untied = materialize_transposed_weights(model)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's advice to pre-process, printed on the root logger
    try:
        with tempfile.TemporaryDirectory(prefix="duet-quantize-") as tmp:
            src, dst = Path(tmp) / "src.onnx", Path(tmp) / "dst.onnx"
            onnx.save_model(model, str(src), save_as_external_data=True, location="src.onnx_data")
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"], use_external_data_format=True,
                             extra_options={"MatMulConstBOnly": True,
                                            # contrib ops (a fused decoder's attention) give shape inference no type
                                            "DefaultTensorType": onnx.TensorProto.FLOAT})
            quantized = onnx.load(str(dst))
    finally:
        root.setLevel(level)
    n = sum(1 for node in quantized.graph.node if node.op_type == "MatMulInteger")
    left = sum(1 for node in quantized.graph.node if node.op_type == "MatMul")
    onnx.save_model(quantized, str(out / f))
    return (f"{n} MatMul -> MatMulInteger (dynamic: int8 weights per output channel, uint8 activations per "
            f"tensor at run time); {left} MatMul left (no constant weight)"
            + (f"; {', '.join(untied)} stored transposed for MatMul" if untied else ""))


# T5's residual stream outgrows float16 (the known fp16 overflow of T5 v1.1 / flan-T5): its norms, residual
# additions, softmax and each feed-forward output projection (`.../DenseReluDense/wo/MatMul`) stay float32.
T5_FAMILY = {"t5", "mt5", "umt5", "longt5"}
T5_KEEP_FLOAT32_OPS = ["Pow", "ReduceMean", "Sqrt", "Reciprocal", "Div", "Add", "Mul", "Softmax",
                       "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization"]
OTHER_KEEP_FLOAT32_OPS = ["Softmax", "LayerNormalization", "SkipLayerNormalization"]
KEEP_FLOAT32_IO = ["logits"]  # duet and Optimum read logits as float32; caches and hidden states go half


def convert_precision(out, dtype, config):
    """float16 or bfloat16 weights and compute for each split graph, in place, with the ops that
    overflow or lose too much kept in float32 (the list above). Caches and hidden states take the new
    type; logits stay float32. bfloat16 is made as float16 and then retyped (same graph, other type)."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    t5 = config.get("model_type") in T5_FAMILY
    ops = DEFAULT_OP_BLOCK_LIST + (T5_KEEP_FLOAT32_OPS if t5 else OTHER_KEEP_FLOAT32_OPS)
    notes = {}
    for f in SPLIT:
        model = onnx.load(str(out / f))
        nodes = [n.name for n in model.graph.node if t5 and n.op_type == "MatMul" and "DenseReluDense/wo" in n.name]
        model = convert_float_to_float16(model, keep_io_types=KEEP_FLOAT32_IO, op_block_list=ops,
                                         node_block_list=nodes)
        if dtype == "bf16":
            retype_float16(model.graph, onnx.TensorProto.BFLOAT16)
        drop_repeated_nodes(model.graph)  # the converter inserts one Cast per consumer, under one name
        topological_sort(model.graph)  # and appends its Casts; the ONNX checker wants order
        onnx.save(model, str(out / f))
        kept = sum(1 for n in model.graph.node if n.op_type in ops or n.name in nodes)
        notes[f] = f"{dtype}: {kept} of {len(model.graph.node)} nodes kept float32" + (
            f" (norms, residual adds, softmax, {len(nodes)} feed-forward outputs: T5 overflows float16)" if t5 else "")
    return notes


def drop_repeated_nodes(graph):
    """Removes nodes that repeat an earlier node exactly (same op, name, inputs, outputs, attributes)."""
    seen, keep = set(), []
    for n in graph.node:
        key = n.SerializeToString()
        if key not in seen:
            seen.add(key)
            keep.append(n)
    del graph.node[:]
    graph.node.extend(keep)


def topological_sort(graph):
    """Reorders graph.node so that each node comes after the producers of its inputs (stable)."""
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            raise SystemExit(f"graph has a cycle or a dangling input near {pending[0].name}")
        ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ids]
        for n in ready:
            known.update(n.output)
        ordered.extend(ready)
    del graph.node[:]
    graph.node.extend(ordered)


def _bf16_bits(values):
    """float32 array -> bfloat16 bit patterns (uint16), rounded to nearest even."""
    bits = np.ascontiguousarray(values, np.float32).view(np.uint32)
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)
    return np.where(np.isnan(values), 0x7FC0, rounded >> 16).astype(np.uint16)


def retype_float16(graph, to):
    """Every float16 type, Cast target and constant in `graph` (and its subgraphs) becomes `to` (bfloat16)."""
    import onnx
    from onnx import numpy_helper

    F16 = onnx.TensorProto.FLOAT16

    def tensor(t):
        if t.data_type == F16:
            values = numpy_helper.to_array(t).astype(np.float32)
            t.ClearField("float_data")
            t.ClearField("int32_data")
            t.data_type = to
            t.raw_data = _bf16_bits(values).tobytes()

    def value_info(v):
        if v.type.tensor_type.elem_type == F16:
            v.type.tensor_type.elem_type = to

    for t in graph.initializer:
        tensor(t)
    for v in list(graph.input) + list(graph.output) + list(graph.value_info):
        value_info(v)
    for n in graph.node:
        for a in n.attribute:
            if n.op_type == "Cast" and a.name == "to" and a.i == F16:
                a.i = to
            if a.type == onnx.AttributeProto.TENSOR:
                tensor(a.t)
            if a.type == onnx.AttributeProto.GRAPH:
                retype_float16(a.g, to)
            for g in a.graphs:
                retype_float16(g, to)


CROSS_PREFIX = "duet_cross/"


def add_cross_cache_to_encoder(out):
    """encoder_model.onnx also returns the cross-attention cache (`present.{i}.encoder.key|value`), rebuilt
    from decoder_model.onnx: each is a projection of encoder_hidden_states (MatMul, bias Add, ...) then a
    Reshape to heads and a Transpose. The decoder's shape arithmetic for that Reshape (which reads its
    own input_ids) becomes the constant shape [0, -1, heads, head_dim]. With it, duet runs every step on
    decoder_with_past_model.onnx (first step: an empty self-attention cache): one decoder graph and one
    copy of its weights, no merged `If` whose two branches each pre-pack every weight. verify_cross_cache
    checks the result against decoder_model.onnx numerically."""
    import onnx
    from onnx import numpy_helper

    enc, dec = onnx.load(str(out / ENCODER)), onnx.load(str(out / DECODER))
    wanted = [o for o in dec.graph.output if o.name.startswith("present.") and ".encoder." in o.name]
    if not wanted:
        return "no cross-attention outputs in the decoder: left as is"
    if any(o.name == w.name for o in enc.graph.output for w in wanted):
        return "already there"
    producers = {o: n for n in dec.graph.node for o in n.output}
    inits = {t.name: t for t in dec.graph.initializer}
    constants = {n.output[0]: n for n in dec.graph.node if n.op_type == "Constant"}
    linear_ops = {"MatMul", "Add", "Mul", "Reshape", "Transpose", "Cast"}
    new_nodes, new_inits = [], {}

    def const_tensor(name):
        """The constant behind `name`: an initializer, a Constant node, or an Identity of either."""
        while name in producers and producers[name].op_type == "Identity":
            name = producers[name].input[0]
        if name in inits:
            return inits[name]
        if name in constants:
            return constants[name].attribute[0].t
        return None

    def is_const(name):
        return const_tensor(name) is not None

    for w in wanted:
        dims = w.type.tensor_type.shape.dim
        heads, head_dim = dims[1].dim_value, dims[3].dim_value
        if not heads or not head_dim:
            raise SystemExit(f"{w.name}: heads and head size are not static in {DECODER}")
        chain, name = [], w.name
        while name != "encoder_hidden_states":
            node = producers.get(name)
            if node is None or node.op_type not in linear_ops:
                raise SystemExit(f"{w.name}: unexpected {node.op_type if node else 'input ' + name} on the way to "
                                 "encoder_hidden_states")
            chain.append(node)
            data = [i for i in node.input if not is_const(i)] if node.op_type != "Reshape" else [node.input[0]]
            if len(data) != 1:
                raise SystemExit(f"{w.name}: {node.op_type} {node.name} has {len(data)} data inputs")
            name = data[0]
        tag = CROSS_PREFIX + w.name + "/"
        rename = lambda x: "last_hidden_state" if x == "encoder_hidden_states" else (  # noqa: E731
            x if x == w.name else tag + x)
        for node in reversed(chain):
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = tag + node.name
            inputs = list(node.input)
            if node.op_type == "Reshape":
                shape_name = tag + "heads_shape"
                new_inits[shape_name] = numpy_helper.from_array(np.array([0, -1, heads, head_dim], np.int64), shape_name)
                inputs[1] = shape_name
            for k, i in enumerate(inputs):
                if i != node.input[k]:
                    continue  # the Reshape's new shape
                const = const_tensor(i)
                if const is not None:
                    inputs[k] = CROSS_PREFIX + i  # one copy however many nodes read it
                    if inputs[k] not in new_inits:
                        t = onnx.TensorProto()
                        t.CopyFrom(const)
                        t.name = inputs[k]
                        new_inits[inputs[k]] = t
                else:
                    inputs[k] = rename(i)
            del copy.input[:]
            copy.input.extend(inputs)
            del copy.output[:]
            copy.output.extend(rename(o) for o in node.output)
            new_nodes.append(copy)
        enc.graph.output.append(w)
    enc.graph.node.extend(new_nodes)
    enc.graph.initializer.extend(new_inits.values())
    onnx.checker.check_model(enc)
    onnx.save(enc, str(out / ENCODER))
    verify_cross_cache(out)
    return f"+{len(wanted)} cross-attention cache outputs ({len(new_nodes)} nodes from {DECODER})"


def verify_cross_cache(out, tol=1e-5):
    """The encoder's cross-attention outputs equal decoder_model.onnx's, and the with-past decoder's first
    step on them (empty self-attention cache) gives decoder_model.onnx's logits (2 rows, unequal lengths)."""
    import onnxruntime as ort

    load = lambda f: ort.InferenceSession(str(out / f), providers=["CPUExecutionProvider"])  # noqa: E731
    enc, first, past = load(ENCODER), load(DECODER), load(DECODER_PAST)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 50, (2, 7)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 5:] = 0
    e = dict(zip([o.name for o in enc.get_outputs()], enc.run(None, {"input_ids": ids, "attention_mask": mask})))
    start = np.zeros((2, 1), np.int64)
    f_in = {"input_ids": start, "encoder_attention_mask": mask, "encoder_hidden_states": e["last_hidden_state"]}
    f = dict(zip([o.name for o in first.get_outputs()], first.run(None, f_in)))
    feeds = dict(f_in)
    for i in past.get_inputs():
        if i.name.startswith("past_key_values"):
            feeds[i.name] = (e[i.name.replace("past_key_values", "present")] if ".encoder." in i.name else
                             np.zeros((2, f[i.name.replace("past_key_values", "present")].shape[1], 0,
                                       f[i.name.replace("past_key_values", "present")].shape[3]), np.float32))
    names = {i.name for i in past.get_inputs()}
    logits = past.run(["logits"], {k: v for k, v in feeds.items() if k in names})[0]
    worst = max(float(np.abs(e[k] - f[k]).max()) for k in e if k.startswith("present"))
    worst = max(worst, float(np.abs(logits - f["logits"]).max()))
    if worst > tol:
        raise SystemExit(f"cross-attention cache in the encoder differs from the decoder's by {worst}")


def drop_unused_data_files(out):
    """Deletes `<graph>_data` files that no graph refers to any more (a transform saved it whole)."""
    import onnx

    used = set()
    for f in SPLIT + [MERGED]:
        if (out / f).exists():
            model = onnx.load(str(out / f), load_external_data=False)
            used |= {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    for p in out.glob("*.onnx_data"):
        if p.name not in used:
            p.unlink()


def external_data(out):
    """Each graph's weights in `<graph>_data` beside it (ONNX Runtime maps them from the file instead of
    copying them out of the parsed model: less peak memory, and an embedding only touched where used)."""
    import onnx

    notes = {}
    for f in SPLIT + [MERGED]:
        if not (out / f).exists():
            continue
        model = onnx.load(str(out / f))
        data = f + "_data"
        (out / data).unlink(missing_ok=True)
        onnx.save_model(model, str(out / f), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data, size_threshold=1024)
        (out / data).chmod(0o644)  # onnx writes it owner-only; the graph beside it is world-readable
        notes[f] = f"weights in {data} ({(out / data).stat().st_size / 2**20:.1f} MiB)"
    return notes


def remerge(out):
    """decoder_model_merged.onnx again from the (transformed) split decoders, as Optimum makes it."""
    from optimum.onnx.graph_transformations import merge_decoders

    import onnx
    from onnx import numpy_helper

    merge_decoders(out / DECODER, out / DECODER_PAST, save_path=str(out / MERGED), strict=False)
    # A with-past decoder's defaulted inputs (decoder_mask.py's self-attention mask) end up inside the
    # If branch, their defaults with them, and the merged graph would require them: give the merged
    # graph the same defaults at its top.
    past = onnx.load(str(out / DECODER_PAST), load_external_data=False)
    defaults = {t.name: t for t in past.graph.initializer} if past.graph.initializer else {}
    defaulted = [i.name for i in past.graph.input if i.name in defaults]
    if defaulted:
        merged = onnx.load(str(out / MERGED), load_external_data=False)
        top = {t.name for t in merged.graph.initializer}
        missing = [n for n in defaulted if n not in top and any(i.name == n for i in merged.graph.input)]
        if missing:
            merged.graph.initializer.extend(numpy_helper.from_array(numpy_helper.to_array(defaults[n]), n) for n in missing)
            onnx.save(merged, str(out / MERGED))


# --------------------------------------------------------------------------------------------------
# Greedy generation over the ONNX graphs
# --------------------------------------------------------------------------------------------------
def in_place_feeds(feeds, new):
    """Feeds for a graph that appends its self-attention cache in place (tools/in_place_cache.py): each
    past padded with room for `new` positions, and `past_sequence_length`. Run without binding, the
    graph returns presents of exactly the used positions."""
    feeds = dict(feeds)
    length = 0
    for k, v in list(feeds.items()):
        if k.startswith("past_key_values.") and ".decoder." in k:
            length = v.shape[2]
            feeds[k] = np.concatenate([v, np.zeros(v.shape[:2] + (new,) + v.shape[3:], v.dtype)], axis=2)
    feeds["past_sequence_length"] = np.array([length], np.int64)
    return feeds


class OrtSeq2Seq:
    """Encoder once, then the decoders with the KV cache; greedy. `merged`: the merged decoder (True),
    the split pair (False), or "with_past": the with-past decoder for every step, the cross-attention
    cache from the encoder (what duet runs when the encoder returns it)."""

    def __init__(self, model_dir, merged=True, threads=2, session_options=None):
        import onnxruntime as ort

        d = Path(model_dir)
        self.config = json.loads((d / "config.json").read_text())
        gen = d / "generation_config.json"
        g = json.loads(gen.read_text()) if gen.exists() else {}
        self.start = g.get("decoder_start_token_id", self.config.get("decoder_start_token_id"))
        eos = g.get("eos_token_id", self.config.get("eos_token_id"))
        self.eos = set(eos if isinstance(eos, list) else [eos])
        so = session_options or ort.SessionOptions()
        if session_options is None:
            so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        load = lambda f: ort.InferenceSession(str(d / f), so, providers=["CPUExecutionProvider"])  # noqa: E731
        self.with_past = merged == "with_past"
        self.merged = merged is True
        self.encoder = load(ENCODER)
        self.enc_outputs = [o.name for o in self.encoder.get_outputs()]
        if self.with_past and not any(n.startswith("present.") for n in self.enc_outputs):
            raise ValueError(f"{d / ENCODER} does not return the cross-attention cache")
        self.decoders = ([load(DECODER_PAST)] if self.with_past else [load(MERGED)] if self.merged
                         else [load(DECODER), load(DECODER_PAST)])
        self.past_inputs = [i for i in self.decoders[-1].get_inputs() if i.name.startswith("past_key_values")]
        self.past_dtype = np.float16 if self.past_inputs and self.past_inputs[0].type == "tensor(float16)" else np.float32

    def encode_all(self, ids, mask):
        return dict(zip(self.enc_outputs, self.encoder.run(None, {"input_ids": ids, "attention_mask": mask})))

    def encode(self, ids, mask):
        return self.encode_all(ids, mask)["last_hidden_state"]

    def generate(self, ids, max_new, min_new=0, stop_at_eos=True):
        """ids: int64 [B, T] (no padding). Returns (tokens [B, n] without the start token, encoder seconds,
        total seconds). After EOS a row gets padding (the start token) until all rows are done."""
        t0 = time.perf_counter()
        mask = np.ones_like(ids)
        enc = self.encode_all(ids, mask)
        hidden = enc["last_hidden_state"]
        t_enc = time.perf_counter() - t0
        b = ids.shape[0]
        tok = np.full((b, 1), self.start, np.int64)
        past, out, done = None, [], np.zeros(b, bool)
        empty = {i.name: np.zeros((b, i.shape[1], 0, i.shape[3]), self.past_dtype) for i in self.past_inputs}
        for step in range(max_new):
            feeds = {"input_ids": tok, "encoder_attention_mask": mask, "encoder_hidden_states": hidden}
            if self.with_past:
                sess = self.decoders[0]
                if past is None:
                    past = {k: (enc[k.replace("past_key_values", "present")] if ".encoder." in k else v)
                            for k, v in empty.items()}
                feeds.update(past)
            elif self.merged:
                feeds["use_cache_branch"] = np.array([past is not None])
                feeds.update(past if past is not None else empty)  # ignored by the no-cache branch
                sess = self.decoders[0]
            else:
                sess = self.decoders[0 if past is None else 1]
                if past is not None:
                    feeds.update(past)
            names = {i.name for i in sess.get_inputs()}
            if "past_sequence_length" in names:  # tools/in_place_cache.py: pasts are buffers with room to append
                feeds = in_place_feeds(feeds, tok.shape[1])
            res = sess.run(None, {k: v for k, v in feeds.items() if k in names})
            outs = dict(zip([o.name for o in sess.get_outputs()], res))
            logits = outs["logits"][:, -1, :]
            if step < min_new:
                logits[:, list(self.eos)] = -np.inf
            nxt = logits.argmax(-1)
            nxt = np.where(done, self.start, nxt)
            out.append(nxt)
            done |= np.isin(nxt, list(self.eos))
            new_past = {k.replace("present", "past_key_values"): v for k, v in outs.items() if k.startswith("present")}
            if past is None:
                past = new_past
            else:  # later steps do not (usefully) return the cross-attention cache: keep the first step's
                past = {k: (v if ".encoder." in k else new_past[k]) for k, v in past.items()}
            tok = nxt[:, None].astype(np.int64)
            if stop_at_eos and done.all():
                break
        return np.stack(out, 1), t_enc, time.perf_counter() - t0

    def forced_argmax(self, inputs, targets):
        """Per input, the argmax at every position when the decoder is fed [start] + target[:-1] at once."""
        out = []
        for ids, tgt in zip(inputs, targets):
            ids = np.array([ids], np.int64)
            mask = np.ones_like(ids)
            dec = np.array([[self.start] + list(tgt[:-1])], np.int64)
            feeds = {"input_ids": dec, "encoder_attention_mask": mask, "encoder_hidden_states": self.encode(ids, mask),
                     "use_cache_branch": np.array([False])}
            feeds.update({i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), self.past_dtype) for i in self.past_inputs})
            sess = self.decoders[0]
            names = {i.name for i in sess.get_inputs()}
            out.append(sess.run(["logits"], {k: v for k, v in feeds.items() if k in names})[0][0].argmax(-1))
        return out


# --------------------------------------------------------------------------------------------------
# Agreement with the fp32 export
# --------------------------------------------------------------------------------------------------
def sample_inputs(model_dir):
    """SAMPLE_TEXTS encoded, plus N_VOCAB_SAMPLES sequences of ordinary tokens from the vocabulary (so a
    tokenizer that knows no English still gets meaningful input). Each ends with the tokenizer's EOS."""
    from tokenizers import Tokenizer

    if not (Path(model_dir) / "tokenizer.json").exists():  # ByT5: bytes + 3, then </s>
        out = [[b + 3 for b in t.encode()] + [1] for t in SAMPLE_TEXTS]
        rng = np.random.default_rng(1234)
        return out + [[int(i) for i in rng.integers(3, 259, n)] + [1] for n in (12, 24, 48, 96)[:N_VOCAB_SAMPLES]]
    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    out = [tok.encode(t).ids for t in SAMPLE_TEXTS]
    special = set(tok.get_added_tokens_decoder())
    ordinary = sorted(set(tok.get_vocab().values()) - special)
    eos = out[0][-1] if out and out[0][-1] in special else None
    rng = np.random.default_rng(1234)
    for n in (12, 24, 48, 96)[:N_VOCAB_SAMPLES]:
        ids = [int(x) for x in rng.choice(ordinary, n)]
        out.append(ids + ([eos] if eos is not None else []))
    return out


def agreement(ref, new):
    """Tokens up to the first divergence agree; from the first divergence on, every position of the
    longer sequence counts as a mismatch. Returns (matching, total)."""
    n = 0
    while n < min(len(ref), len(new)) and ref[n] == new[n]:
        n += 1
    return n, max(len(ref), len(new))


def strip(tokens, eos):
    out = []
    for t in tokens:
        out.append(int(t))
        if t in eos:
            break
    return out


def has_cross_cache(model_dir):
    """Whether the encoder returns the cross-attention cache (add_cross_cache_to_encoder)."""
    import onnx

    graph = onnx.load(str(Path(model_dir) / ENCODER), load_external_data=False).graph
    return any(o.name.startswith("present.") for o in graph.output)


def verify(candidate, reference, max_new=VERIFY_NEW_TOKENS):
    """Greedy generation on both dirs, merged and split decoders, over sample_inputs(reference), on
    ONNX Runtime's CPU provider (float16 nodes run there in float32 behind inserted Casts, so the
    agreement reflects float16 storage; tools/gpu_check.sh measures the GPU's). Graphs the CPU provider
    cannot run (bfloat16) are reported as skipped."""
    samples = sample_inputs(reference)
    try:
        OrtSeq2Seq(candidate, merged=False)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        if "NOT_IMPLEMENTED" not in str(e):
            raise
        return samples, {"skipped": "ONNX Runtime's CPU provider has no kernels for these graphs (" +
                         str(e).split(":")[-1].strip()[:160] + "); tools/gpu_check.sh measures it on a GPU"}
    result = {}
    cross = {d: has_cross_cache(d) for d in (reference, candidate)}
    has_merged = all((Path(d) / MERGED).exists() for d in (reference, candidate))
    layouts = ([True] if has_merged else []) + [False] + (["with_past"] if cross[candidate] else [])
    for merged in layouts:
        gens = []
        for d in (reference, candidate):  # a reference without the cross cache runs merged instead
            m = OrtSeq2Seq(d, merged=merged if cross[d] or merged != "with_past" else has_merged)
            gens.append([strip(m.generate(np.array([s], np.int64), max_new)[0][0], m.eos) for s in samples])
        pairs = [agreement(r, c) for r, c in zip(*gens)]
        result[{True: "merged", False: "split"}.get(merged, merged)] = {
            "token_agreement": round(sum(p[0] for p in pairs) / sum(p[1] for p in pairs), 4),
            "identical_sequences": sum(r == c for r, c in zip(*gens)),
            "tokens": sum(p[1] for p in pairs),
        }
        if merged is has_merged:  # teacher forcing on the reference's sequences: argmax agreement at every position
            ref_gen = gens[0]
            forced = [OrtSeq2Seq(d, merged=has_merged).forced_argmax(samples, ref_gen) for d in (reference, candidate)]
            same = sum(int((a == b).sum()) for a, b in zip(*forced))
            result["teacher_forced_agreement"] = round(same / sum(len(a) for a in forced[0]), 4)
    return samples, result


def write_manifest(out, source, optimized, quant, verified, graphs, dtype="fp32"):
    """duet_export.json. token_agreement: the lower of merged and split, null when nothing was transformed
    or it could not be measured here (then verification.skipped says why)."""
    samples, detail = verified if verified else ([], None)
    detail = dict(detail or {})
    skipped = detail.pop("skipped", None)
    forced = detail.pop("teacher_forced_agreement", None)
    manifest = {
        "format": FORMAT,
        "source": str(source),
        "optimized": optimized,
        "quantization": quant,
        "dtype": dtype,
        "token_agreement": min(v["token_agreement"] for v in detail.values()) if detail else None,
        "sample_inputs": len(samples),
        "verification": {"reference": "fp32 export of the same source", "greedy_new_tokens": VERIFY_NEW_TOKENS,
                         "decoders": detail, "teacher_forced_agreement": forced} if detail else (
                             {"skipped": skipped} if skipped else None),
        "graphs": graphs,
        "exported_with": versions(),
    }
    (Path(out) / "duet_export.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def copy_export(src, dst):
    """Copies an existing export (graphs, tokenizer/config files and folders such as sentence-transformers'
    1_Pooling; not its manifest) into dst."""
    dst.mkdir(parents=True, exist_ok=True)
    for p in Path(src).iterdir():
        if p.is_file() and p.name != "duet_export.json":
            shutil.copy2(p, dst / p.name)
        elif p.is_dir():
            shutil.copytree(p, dst / p.name, dirs_exist_ok=True)


def reference_copy(out):
    """A temporary copy of the fp32 graphs in out, to verify against after transforming out in place."""
    tmp = Path(tempfile.mkdtemp(prefix="duet-export-ref-"))
    copy_export(out, tmp)
    return tmp
