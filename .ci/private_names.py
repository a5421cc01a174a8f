"""Gate: no private (underscore) name of one project module is used by another.

ruff's PLC2701 refuses private imports from other packages only; inside `dendsn` and `dendsn_cli`
this script does the same: `from .x import _name`, `from dendsn.x import _name` and
`x._name` (x a project module imported by name) are refused. A helper two modules need is public
(no underscore) in the module where it belongs.

    python .ci/private_names.py [DIR ...]      # default: dendsn_cli models; exit 1 on a finding
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGES = {"dendsn_cli": "dendsn_cli", "models": "dendsn"}   # folder -> import name


def module_name(path: Path) -> str:
    parts = list(path.with_suffix("").parts)
    parts[0] = PACKAGES[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    """The absolute module name of an import-from (relative ones resolved against ``here``)."""
    if not node.level:
        return node.module or ""
    base = here.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def project(name: str) -> bool:
    return name.split(".")[0] in PACKAGES.values()


def findings(path: Path) -> list[str]:
    here = module_name(path)
    tree = ast.parse(path.read_text(), str(path))
    modules: dict[str, str] = {}      # local name -> project module it names
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = resolve(node, here, path.name == "__init__.py")
            if not project(source):
                continue
            for alias in node.names:
                if private(alias.name) and source != here:
                    found.append(f"{path}:{node.lineno}: imports {alias.name} from {source}")
                modules[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if project(alias.name):
                    modules[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and private(node.attr)
                and node.value.id in modules):
            found.append(f"{path}:{node.lineno}: uses {node.value.id}.{node.attr} of {modules[node.value.id]}")
    return found


def main(dirs: list[str]) -> int:
    found = [f for d in dirs for p in sorted(Path(d).rglob("*.py")) for f in findings(p)]
    for line in found:
        print(line)
    print(f"private names across modules: {len(found)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or list(PACKAGES)))
