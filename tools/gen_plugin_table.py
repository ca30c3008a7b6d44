#!/usr/bin/env python3
"""Regenerates the function table of src/ffi/plugin.rs from the exported functions in src/ffi/.

Members already in the table keep their place; new functions are appended at the end (the ABI
rule: the table only grows at its end). Run it after adding a C function, then `make header`.
The header test and tests/plugin.rs fail when the table misses a function of duet.h.
"""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "src/ffi/plugin.rs"
EXPORT = re.compile(r'#\[no_mangle\]\s*pub (?:unsafe )?extern "C" fn (duet_\w+)\(([^)]*)\)(?:\s*->\s*([^{]+))?\s*\{', re.S)


def exported():
    funcs = {}
    for path in sorted((ROOT / "src/ffi").glob("*.rs")):
        if path.name == "plugin.rs":
            continue
        for name, args, ret in EXPORT.findall(path.read_text()):
            types = [a.split(":", 1)[1].strip() for a in " ".join(args.split()).split(",") if a.strip()]
            sig = f'unsafe extern "C" fn({", ".join(types)})' + (f" -> {ret.strip()}" if ret else "")
            funcs[name] = sig
    return funcs


def main():
    src = PLUGIN.read_text()
    funcs = exported()
    current = re.findall(r"^    pub (\w+): unsafe extern", src, re.M)
    order = [f"duet_{n}" for n in current if f"duet_{n}" in funcs]
    order += [n for n in funcs if n not in order]
    fields = "\n".join(f"    pub {n[5:]}: {funcs[n]}," for n in order)
    inits = "\n".join(f"    {n[5:]}: {n}," for n in order)
    src = re.sub(r"(    pub struct_size: usize,\n)(?:    pub \w+: unsafe extern[^\n]*\n)*", lambda m: m.group(1) + fields + "\n", src)
    src = re.sub(r"(    struct_size: std::mem::size_of::<duet_api_v1>\(\),\n)(?:    \w+: duet_\w+,\n)*", lambda m: m.group(1) + inits + "\n", src)
    PLUGIN.write_text(src)
    print(f"{len(order)} functions in the table")


if __name__ == "__main__":
    main()
