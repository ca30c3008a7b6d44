#!/usr/bin/env python3
"""Every target named in the Makefile's .PHONY has a rule (prerequisites or a recipe): a phony name
without one does nothing and says nothing (`make bench-summarizer` once did, its rule joined to a
comment line). Reads make's own database (`make -pRrq`), so it sees what make sees."""
import re
import subprocess
import sys

db = subprocess.run(["make", "-pRrq", "-f", sys.argv[1] if len(sys.argv) > 1 else "Makefile", "__no_such_target__"],
                    capture_output=True, text=True).stdout
phony = set(re.search(r"^\.PHONY: (.*)$", db, re.M).group(1).split())
ruled = set()
for block in re.split(r"\n\n+", db):
    m = re.match(r"^([^\s#:]+):(.*)$", block.lstrip("\n").split("\n")[0])
    if m and (m.group(2).strip() or "#  recipe to execute" in block):
        ruled.add(m.group(1))
missing = sorted(phony - ruled)
if missing:
    sys.exit(f"Makefile: .PHONY names targets with no rule (nothing runs): {', '.join(missing)}")
print(f"Makefile: all {len(phony)} phony targets have a rule")
