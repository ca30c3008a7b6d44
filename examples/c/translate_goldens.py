#!/usr/bin/env python3
"""Runs examples/c/translate on every translation golden (tests/fixtures/translation_goldens.json):
the C host's output must be the Hugging Face recipe's translation, byte for byte.

    python3 examples/c/translate_goldens.py BUILD/translate
"""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
binary = sys.argv[1]
goldens = json.loads((ROOT / "tests/fixtures/translation_goldens.json").read_text())["translations"]
for g in goldens:
    args = [binary, str(ROOT / "tests/fixtures" / g["model"]), g["to"]] + ([g["from"]] if g["from"] else [])
    args += [f"{k}={v}" for k, v in g["params"].items()]
    out = subprocess.run(args, input=g["text"], capture_output=True, text=True, timeout=120)
    if out.returncode != 0 or out.stdout.rstrip("\n") != g["translation"]:
        sys.exit(f"{g['model']} -> {g['to']}: exit {out.returncode}\n  got  {out.stdout!r}\n  want {g['translation']!r}\n{out.stderr}")
print(f"translate: {len(goldens)} goldens reproduced by the C host")
