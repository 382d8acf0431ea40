"""Print the shape of a Python source tree: lines and functions per package, the longest functions.

Used to report what a restructuring changed (issue 9): run it on two checkouts and compare.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path


def main(root: str = "src/digest", longest: int = 5) -> None:
    base = Path(root)
    lines: dict[str, int] = defaultdict(int)
    funcs: dict[str, int] = defaultdict(int)
    spans: list[tuple[int, str]] = []
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(base)
        package = rel.parts[0] if len(rel.parts) > 1 else "(top level)"
        text = path.read_text(encoding="utf-8")
        lines[package] += len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                funcs[package] += 1
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                spans.append((length, f"{rel.with_suffix('')}.{node.name}".replace("/", ".")))
    print(f"{'package':<16}{'lines':>8}{'functions':>11}")
    for package in sorted(lines):
        print(f"{package:<16}{lines[package]:>8}{funcs[package]:>11}")
    print(f"{'total':<16}{sum(lines.values()):>8}{sum(funcs.values()):>11}")
    print(f"longest {longest} functions:")
    for length, name in sorted(spans, reverse=True)[:longest]:
        print(f"  {length:>4}  {name}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
