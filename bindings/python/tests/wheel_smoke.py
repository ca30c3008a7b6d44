"""Run by `make wheel-test` in a fresh virtualenv holding only the built wheel, with a clean
environment (no DUET_LIBRARY, DUET_ORT_LIBRARY or LD_LIBRARY_PATH): the installed package must find
libduet and ONNX Runtime inside itself.

    python wheel_smoke.py SEQ2SEQ_MODEL_DIR EMBEDDING_MODEL_DIR
"""
import json
import os
import sys

import duet

seq2seq, embedder = sys.argv[1], sys.argv[2]
for var in ("DUET_LIBRARY", "DUET_ORT_LIBRARY", "ORT_DYLIB_PATH", "LD_LIBRARY_PATH"):
    assert var not in os.environ, f"{var} is set: the check needs a clean environment"
with duet.Model(seq2seq) as model:
    out = model.generate("installed from a wheel", max_new_tokens=4)
    info = model.info
site = os.path.dirname(os.path.abspath(duet.__file__))
assert duet.library_path().startswith(site), duet.library_path()
assert info["onnxruntime_library"].startswith(site), info["onnxruntime_library"]
with duet.Model(embedder) as model:
    vector = model.embed("a terminal text editor", as_numpy=False)
assert len(vector) == 384 and abs(sum(x * x for x in vector) - 1) < 1e-4
try:
    duet.Model("/nonexistent/model")
except duet.ModelFileMissing as e:
    assert e.status == 8
print(json.dumps({"wheel": "ok", "duet": duet.version(), "library": duet.library_path(), "text": out.sequences[0].text}, ensure_ascii=False))
