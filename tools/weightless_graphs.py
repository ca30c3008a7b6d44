"""Graph files without their weights, for timing on a machine that cannot receive the weights.

    python tools/weightless_graphs.py MODEL_DIR OUT_DIR      # strip: graphs + weights.json, no weights
    python tools/weightless_graphs.py --fill OUT_DIR          # (or: tools/gpu_check.sh does it with truncate)

The t5-small-architecture bench exports are ~300 MB; the GPU machine takes 64 MiB. So each graph is
saved with its weights as external data (`<graph>.data`), the data file is deleted, and weights.json
records where each tensor was (offset, length, type). --fill writes a new data file: float tensors get
seeded normal noise of the original's standard deviation (recorded too), integer tensors zeros. Zeros
everywhere would be wrong for timing: a CPU runs a zero-weight t5-small ~1.5x faster (measured), so
the noise is needed. The outputs are meaningless: use such a model for timing only.
"""
import json
import shutil
import sys
from pathlib import Path

GRAPHS = ["encoder_model.onnx", "decoder_model_merged.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx"]


FLOAT_TYPES = {1: "float32", 10: "float16"}  # ONNX TensorProto data types filled with noise


def strip(src, out):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    src, out = Path(src), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for p in src.iterdir():
        if p.is_file() and not p.name.endswith(".onnx") and not p.name.endswith(".data"):
            shutil.copy2(p, out / p.name)
    for g in GRAPHS:
        if not (src / g).exists():
            continue
        model = onnx.load(str(src / g))
        std = {t.name: float(numpy_helper.to_array(t).astype(np.float32).std()) for t in model.graph.initializer
               if t.data_type in FLOAT_TYPES}
        data = g + ".data"
        onnx.save_model(model, str(out / g), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data, size_threshold=1024)
        tensors = []
        for t in onnx.load(str(out / g), load_external_data=False).graph.initializer:
            ext = {e.key: e.value for e in t.external_data}
            if ext:
                tensors.append({"name": t.name, "type": t.data_type, "offset": int(ext.get("offset", 0)),
                                "length": int(ext["length"]), "std": std.get(t.name, 0.0)})
        files[data] = {"bytes": (out / data).stat().st_size, "tensors": tensors}
        (out / data).unlink()
    (out / "weights.json").write_text(json.dumps(files) + "\n")
    print(f"{out}: {len(files)} graphs, {sum(f['bytes'] for f in files.values()) / 2**20:.0f} MiB of weights left out")


def fill(out):
    import numpy as np

    out = Path(out)
    rng = np.random.default_rng(0)
    for name, spec in json.loads((out / "weights.json").read_text()).items():
        with open(out / name, "wb") as f:
            f.truncate(spec["bytes"])
            for t in spec["tensors"]:
                if t["type"] in FLOAT_TYPES:
                    dtype = np.dtype(FLOAT_TYPES[t["type"]])
                    n = t["length"] // dtype.itemsize
                    f.seek(t["offset"])
                    f.write((rng.standard_normal(n, dtype=np.float32) * t["std"]).astype(dtype).tobytes())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--fill":
        fill(sys.argv[2])
    elif len(sys.argv) == 3:
        strip(sys.argv[1], sys.argv[2])
    else:
        raise SystemExit(__doc__)
