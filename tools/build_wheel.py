#!/usr/bin/env python3
"""Builds the self-contained Python wheel `duet-runtime`: the `duet` package (import name) with
libduet.so and the ONNX Runtime library it loads beside it, so that `pip install` needs nothing
else and no environment variable.

    python3 tools/build_wheel.py --lib target/release/libduet.so --ort-wheel .ort/wheel/onnxruntime-*.whl --out dist

The platform tag follows the newest glibc symbol version the two libraries need (as auditwheel
reports it: manylinux_2_X_x86_64). The wheel is written by hand (PEP 427: the files, METADATA,
WHEEL, RECORD with sha256 digests), since no build backend packs prebuilt libraries without
compiling them itself.
"""
import argparse
import base64
import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bindings" / "python" / "duet"
DIST_NAME = "duet-runtime"
ORT_MEMBERS = {
    "onnxruntime/capi/libonnxruntime.so.{v}": "duet/libonnxruntime.so",
    "onnxruntime/capi/libonnxruntime_providers_shared.so": "duet/libonnxruntime_providers_shared.so",
}


def project_version():
    text = (ROOT / "bindings" / "python" / "pyproject.toml").read_text()
    return re.search(r'^version = "([^"]+)"', text, re.M).group(1)


def glibc_floor(paths):
    """The newest GLIBC_2.N symbol version any of `paths` needs, as (2, N)."""
    newest = (2, 17)
    for p in paths:
        out = subprocess.run(["objdump", "-T", str(p)], check=True, capture_output=True, text=True).stdout
        for major, minor in re.findall(r"GLIBC_(\d+)\.(\d+)", out):
            newest = max(newest, (int(major), int(minor)))
    return newest


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True, help="libduet.so (release build)")
    ap.add_argument("--ort-wheel", required=True, help="the onnxruntime wheel whose library is bundled")
    ap.add_argument("--out", default="dist")
    args = ap.parse_args()

    version = project_version()
    ort_wheel = Path(args.ort_wheel)
    ort_version = re.match(r"onnxruntime-([0-9.]+)-", ort_wheel.name).group(1)
    files = {}  # name in the wheel -> bytes
    for path in sorted(PACKAGE.glob("*.py")) + [PACKAGE / "py.typed"]:
        files[f"duet/{path.name}"] = path.read_bytes()
    files["duet/libduet.so"] = Path(args.lib).read_bytes()
    with zipfile.ZipFile(ort_wheel) as z:
        for member, target in ORT_MEMBERS.items():
            files[target] = z.read(member.format(v=ort_version))
        # ONNX Runtime's MIT license and its third-party notices travel with its library.
        for n in ("onnxruntime/LICENSE", "onnxruntime/ThirdPartyNotices.txt"):
            files[f"duet_runtime-{version}.dist-info/licenses/onnxruntime-{Path(n).name}"] = z.read(n)
    files[f"duet_runtime-{version}.dist-info/licenses/LICENSE"] = b"duet is licensed under the Apache License, Version 2.0.\n"

    scratch = Path(args.out) / ".libs-for-tag"
    scratch.mkdir(parents=True, exist_ok=True)
    libs = []
    for name in ("duet/libduet.so", "duet/libonnxruntime.so"):
        p = scratch / Path(name).name
        p.write_bytes(files[name])
        libs.append(p)
    major, minor = glibc_floor(libs)
    tag = f"py3-none-manylinux_{major}_{minor}_x86_64"

    dist_info = f"duet_runtime-{version}.dist-info"
    readme = (ROOT / "bindings" / "python" / "README.md").read_text()
    files[f"{dist_info}/METADATA"] = (
        "Metadata-Version: 2.1\n"
        f"Name: {DIST_NAME}\n"
        f"Version: {version}\n"
        "Summary: duet: encoder-decoder Transformers and embedding models on ONNX Runtime (self-contained: libduet and ONNX Runtime inside)\n"
        "License: Apache-2.0\n"
        "Requires-Python: >=3.8\n"
        "Provides-Extra: numpy\n"
        "Requires-Dist: numpy; extra == \"numpy\"\n"
        f"Description-Content-Type: text/markdown\n\n{readme}"
    ).encode()
    files[f"{dist_info}/WHEEL"] = f"Wheel-Version: 1.0\nGenerator: duet tools/build_wheel.py\nRoot-Is-Purelib: false\nTag: {tag}\n".encode()
    files[f"{dist_info}/top_level.txt"] = b"duet\n"
    record = [record_line(n, d) for n, d in files.items()] + [f"{dist_info}/RECORD,,"]
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()

    out = Path(args.out) / f"duet_runtime-{version}-{tag}.whl"
    for old in Path(args.out).glob("duet_runtime-*.whl"):
        old.unlink()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 2, 2, 0, 0, 0))
            info.external_attr = (0o755 if name.endswith(".so") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    for p in libs:
        p.unlink()
    scratch.rmdir()
    print(out)


if __name__ == "__main__":
    sys.exit(main())
