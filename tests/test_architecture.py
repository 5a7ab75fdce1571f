"""The package's shape: public names kept, no import cycle, lower layers never reach up.

See docs/architecture.md for the picture these tests hold the code to.
"""

import ast
import importlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import cellnb

PACKAGE = Path(cellnb.__file__).parent
SNAPSHOT = Path(__file__).parent / "data" / "public_api.json"

#: Each layer and the only parts of cellnb it may import (lazily inside functions too).
LOWER_LAYERS = {
    "_shared": set(),
    "io": {"_shared"},
    "models": {"_shared"},
    "data": {"_shared", "io"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules) -> set[str]:
    """Every cellnb module `name` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in modules else base)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                found.add(target)
    return {m for m in found if m in modules and m != name and m != "cellnb"}


def _graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_even_through_lazy_imports():
    assert _cycles(_graph()) == []


def test_lower_layers_never_import_upper_ones():
    wrong = []
    for name, targets in _graph().items():
        layer = name.split(".")[1] if "." in name else None
        if layer not in LOWER_LAYERS:
            continue
        for target in targets:
            other = target.split(".")[1]
            if other != layer and other not in LOWER_LAYERS[layer]:
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def test_no_flat_private_modules_left():
    """Private machinery lives in the subpackage of its concept, not as cellnb/_x.py;
    the per-image chain (_pipeline) is the one verb-level private module."""
    flat = sorted(p.name for p in PACKAGE.glob("_*.py")
                  if p.name not in {"__init__.py", "__main__.py", "_pipeline.py"})
    assert flat == []


def test_every_module_imports_alone():
    """In a fresh interpreter, each module imports on its own (no hidden import order).
    One interpreter per module, as many at a time as there are cores."""
    names = sorted(m for m in _modules() if not m.endswith("__main__"))

    def run(name):
        result = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True,
                                text=True, timeout=300)
        return name, result.returncode, result.stderr[-1500:]

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        failed = [(name, err) for name, code, err in pool.map(run, names) if code]
    assert failed == []


def _public_api() -> dict[str, list[str]]:
    names = json.loads(SNAPSHOT.read_text())
    return {module: sorted(importlib.import_module(module).__all__) for module in names}


def test_public_api_is_kept():
    """``cellnb.__all__`` and each public module's ``__all__``, as listed before the package
    was reorganised into subpackages (tests/data/public_api.json). A name added on purpose
    goes into the listing; a name removed needs a deprecation first."""
    before = json.loads(SNAPSHOT.read_text())
    now = _public_api()
    assert now == before
    for module, names in before.items():
        for name in names:
            assert getattr(importlib.import_module(module), name) is not None


def test_old_module_path_of_the_microscope_reader_still_works():
    from cellnb import microscope
    from cellnb.io import microscope as moved

    assert microscope.describe is moved.describe
    assert sorted(microscope.__all__) == sorted(moved.__all__)


def test_every_recipe_follows_the_recipe_protocol_and_train_reads_it_directly():
    from cellnb import recipes

    for name in recipes.RECIPES:
        module = recipes.get(name)  # checks the protocol
        assert module.USES_MODEL == (module.DEFAULT_MODEL is not None)
    for verb in ("train.py", "trained.py"):
        text = (PACKAGE / verb).read_text(encoding="utf-8")
        assert "getattr(recipe" not in text and "getattr(module" not in text, verb


def test_a_recipe_lacking_part_of_the_protocol_is_refused():
    import types

    from cellnb.recipes import check_recipe, get

    unet = get("unet")
    fake = types.SimpleNamespace(**{k: getattr(unet, k) for k in dir(unet) if k.isupper()},
                                 __name__="mine", build=unet.build, load_net=unet.load_net,
                                 predict=unet.predict)
    check_recipe(fake)
    fake.PROMPTED = True
    with pytest.raises(TypeError, match=r"lacks \['box_prompts', 'prompt_model', 'segment'\]"):
        check_recipe(fake)
