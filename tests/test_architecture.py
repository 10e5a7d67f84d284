"""Dependencies point one way: the edge (``gmzoo.cli``, the model table ``gmzoo.zoo``) imports
the families, the families import the spine and the libraries, and the spine and the libraries
import no family and not the table. Read from the source (every import statement, at module
level or inside a function), so a new back-edge fails here the moment it is written."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "gmzoo"
# The spine and the shared libraries under it.
SPINE = ("train", "data", "metrics", "nn", "losses", "diffusion", "samplers")
# What only the edge and the families may import: the families' glue and the table. The
# Recipe interface itself (recipes/base.py) is the spine's contract with them.
FAMILY_OR_EDGE = ("gmzoo.recipes", "gmzoo.families", "gmzoo.zoo", "gmzoo.cli")
INTERFACE = ("gmzoo.recipes.base",)


def imports_of(path: pathlib.Path) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every module (and ``module.name``) an import statement of
    ``path`` reaches."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}")
                                                   for a in node.names]
    return out


def back_edges(folder: str) -> list[str]:
    bad = []
    for f in sorted((ROOT / folder).rglob("*.py")):
        for line, name in imports_of(f):
            if name.startswith(FAMILY_OR_EDGE) and not name.startswith(INTERFACE):
                bad.append(f"{f.relative_to(ROOT.parent)}:{line} imports {name}")
    return sorted(set(bad))


@pytest.mark.parametrize("folder", SPINE)
def test_spine_imports_no_family_and_not_the_table(folder):
    assert back_edges(folder) == []


def test_the_check_sees_a_back_edge(tmp_path, monkeypatch):
    """The check itself can fail: a spine module that imports the table is reported."""
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "bad.py").write_text(
        "import jax\n\ndef f():\n    from gmzoo import zoo\n    from gmzoo.recipes.vae import VAEConfig\n"
        "    from gmzoo.recipes.base import Recipe\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    found = back_edges("train")
    assert any("gmzoo.zoo" in b for b in found) and any("gmzoo.recipes.vae" in b for b in found)
    assert not any("recipes.base" in b for b in found)


def test_importing_the_spine_loads_no_family():
    """At run time too: importing the loop and the evaluator brings in no recipe module."""
    import subprocess
    import sys

    code = ("import sys, gmzoo.train.loop, gmzoo.train.evaluate\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('gmzoo.recipes.', 'gmzoo.families', "
            "'gmzoo.zoo', 'gmzoo.models')) and m != 'gmzoo.recipes.base')\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", out.stdout
