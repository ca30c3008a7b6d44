#!/usr/bin/env python3
"""Reference vectors for the bundled embedder, computed once with sentence-transformers itself and
committed (tests/fixtures/minilm_reference.json); tests/embedder.rs holds duet's vectors to them.

    .venv-bench/bin/python tools/make_embedder_reference.py CHECKPOINT_DIR_OR_WHEEL OUT.json

Needs the bench pins (tools/bench/requirements.txt: torch, sentence-transformers). The texts cover
short and long inputs (past the 256-token limit, which sentence-transformers truncates), accents,
CJK, emoji, and Debian package descriptions like the ones the demo searches.
"""
import json
import sys
import tempfile
import zipfile
from pathlib import Path

LONG = " ".join(
    f"Paragraph {i}: the library provides functions for parsing, validating and transforming structured "
    f"documents, with bindings for several languages and a command-line tool." for i in range(40)
)
TEXTS = [
    "A fast, lightweight text editor for the terminal",
    "library for manipulating PNG images",
    "How do I compress files on the command line?",
    "GNU compiler collection: C, C++ and Fortran front ends",
    "This package contains the header files and static libraries needed to build programs that use "
    "libfoo. libfoo is a library for reading and writing configuration files.",
    "Python 3 interface to the SQLite database engine",
    "The quick brown fox jumps over the lazy dog.",
    "tool to synchronise files between machines over SSH",
    "Café, naïve, résumé: accents and diacritics in Unicode text",
    "Überprüfung der Rechtschreibung für deutsche Texte",
    "日本語の文章を形態素解析するツール",
    "中文分词和词性标注工具包",
    "Emoji in a description 🙂🚀 should still embed",
    "x",
    "   leading and trailing white space   ",
    "network packet analyzer with a graphical interface",
    "daemon that keeps the system clock synchronised with NTP servers",
    "fonts for displaying mathematical symbols",
    LONG,
    "query: what package shows disk usage per directory",
    "dummy transitional package",
    "documentation for the Rust programming language",
    "1234567890 !@#$%^&*()_+ [brackets] {braces}",
    "A multi-line text.\nIt has several lines.\n\nAnd a blank one between paragraphs.",
]


def main():
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    with tempfile.TemporaryDirectory() as scratch:
        if src.suffix == ".whl":
            with zipfile.ZipFile(src) as z:
                z.extractall(scratch)
            src = sorted(Path(scratch).rglob("model.safetensors"))[0].parent
        model = SentenceTransformer(str(src), device="cpu")
        vectors = model.encode(TEXTS, batch_size=8, convert_to_numpy=True, normalize_embeddings=False)
        tokens = [len(model.tokenizer(t)["input_ids"]) for t in TEXTS]
    doc = {
        "about": "all-MiniLM-L6-v2 vectors from sentence-transformers (tools/make_embedder_reference.py)",
        "sentence_transformers": sentence_transformers.__version__,
        "max_seq_length": model.max_seq_length,
        "texts": TEXTS,
        "tokens_untruncated": tokens,
        "vectors": [[round(float(x), 7) for x in v] for v in vectors],
    }
    out.write_text(json.dumps(doc, ensure_ascii=False) + "\n")
    print(f"{out}: {len(TEXTS)} vectors of width {vectors.shape[1]}")


if __name__ == "__main__":
    main()
