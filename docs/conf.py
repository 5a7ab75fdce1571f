"""Sphinx configuration of cellnb's documentation site (``make docs``).

Three things are generated at build time, none of them kept in git:

- ``docs/tutorials/*.ipynb``: the tutorial notebooks. Where the test suite
  has already executed a notebook from its current cells, that copy is used
  (see ``docs/notebook_outputs.py``); otherwise myst-nb executes the
  notebook during the build, in the quick configuration.
- ``docs/api/*.rst``: one page per public module, listing every name of its
  ``__all__`` (each documented where it is defined).
- a check that every public name has a docstring (a class's public methods
  and properties included); a missing one is a warning, and the build runs
  with warnings as errors.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
from pathlib import Path

from sphinx.util import logging

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))
import notebook_outputs  # noqa: E402

ROOT = DOCS.parent
logger = logging.getLogger("cellnb.docs")

project = "cellnb"
author = "cellnb developers"
copyright = "2026, the cellnb developers"
release = importlib.import_module("cellnb").__version__

extensions = [
    "myst_nb",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints", "make_figures.py", "README.md"]
html_theme = "pydata_sphinx_theme"
html_title = f"cellnb {release}"
html_static_path = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
}

# -- cross-references: every internal reference must resolve (nitpicky); names of other
#    libraries are plain text (no network here for their inventories) --------------------
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(np|numpy|pd|pandas|torch|torchvision|xr|xarray|dask|distributed|zarr|"
               r"matplotlib|plt|skimage|scipy|sklearn|PIL|micro_sam|segment_anything|"
               r"torch_em|cellpose|stardist|tensorflow|bioio|bioimageio|pycocotools|"
               r"laptrack|trackpy|ipywidgets|tqdm|pathlib|os|typing|collections|"
               r"dataclasses|concurrent|logging|json|yaml|pooch)(\..*)?"),
    (r"py:.*", r"(Path|PathLike|Generator|Callable|Iterable|Iterator|Sequence|Mapping|"
               r"Any|Optional|Union|Literal|ndarray|DataFrame|Series|Figure|Axes|Module|"
               r"Tensor|Client|optional|callable|array_like|array-like|path-like|"
               r"file-like|scalar|int|float|str|bool|dict|list|tuple|object|None|"
               r"type|bytes|slice|range|set|frozenset|Exception|ValueError|TypeError)"),
]

# -- autodoc / autosummary / numpydoc -----------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "none"          # the numpydoc sections say the types
autodoc_default_options = {"member-order": "bysource"}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = False
templates_path = ["_templates"]

# -- notebooks (myst-nb) -------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3
nb_execution_mode = "auto"          # each tutorial says "off" (outputs kept) or "force"
nb_execution_timeout = 1800
nb_execution_raise_on_error = True
nb_execution_in_temp = True
nb_merge_streams = True
nb_execution_show_tb = True
suppress_warnings = ["mystnb.unknown_mime_type"]   # ipywidgets views: their text is shown
# a page has no kernel: cellnb's widgets (viewer, review, locate tuner, stack viewer) carry a
# PNG of their first view beside the live widget, and the page shows that picture instead of
# blank space (JupyterLab keeps drawing the live widget)
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]



# -----------------------------------------------------------------------------------------
# tutorials
# -----------------------------------------------------------------------------------------
def _copy_tutorials():
    """Copy the notebooks into ``docs/tutorials``: executed copies where current, else to run."""
    target = DOCS / "tutorials"
    sources = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for stale in target.glob("*.ipynb"):
        if stale.name not in {p.name for p in sources}:
            stale.unlink()
    reused = 0
    for source in sources:
        done = notebook_outputs.current_copy(source)
        reused += done is not None
        notebook = json.loads((done or source).read_text(encoding="utf-8"))
        # myst-nb's per-notebook setting: show the kept outputs, or run it now
        notebook["metadata"]["mystnb"] = {"execution_mode": "off" if done else "force"}
        for cell in notebook["cells"]:  # links between the repository's folders
            if cell["cell_type"] == "markdown":
                text = "".join(cell["source"]).replace("](../docs/", "](../")
                cell["source"] = text
        _write_if_changed(target / source.name, json.dumps(notebook, indent=1))
    logger.info(f"[cellnb] tutorials: {reused} of {len(sources)} reuse the test suite's "
                f"executed copies ({notebook_outputs.folder()}); the others run now")


# -----------------------------------------------------------------------------------------
# API reference
# -----------------------------------------------------------------------------------------
#: Public modules, in the order of the pipeline; each page lists its ``__all__``.
API_MODULES = [
    "cellnb.io", "cellnb.config", "cellnb.data", "cellnb.io.microscope", "cellnb.microscope",
    "cellnb.locate",
    "cellnb.prompt", "cellnb.models", "cellnb.segment", "cellnb.annotate", "cellnb.measure",
    "cellnb.classify", "cellnb.qc", "cellnb.curate", "cellnb.export", "cellnb.dataset",
    "cellnb.train", "cellnb.trained", "cellnb.recipes", "cellnb.recipes.unet",
    "cellnb.recipes.microsam", "cellnb.recipes.samcell", "cellnb.recipes.cellseg1",
    "cellnb.recipes.cellsam", "cellnb.recipes.cellpose", "cellnb.recipes.maskrcnn",
    "cellnb.evaluate", "cellnb.plot", "cellnb.viewer", "cellnb.widgets", "cellnb.movies",
    "cellnb.model_zoo", "cellnb.weights", "cellnb.testing", "cellnb.cli",
]


def _public_names(module):
    names = getattr(module, "__all__", None)
    if names is None:
        raise RuntimeError(f"{module.__name__} has no __all__: say what is public")
    return list(names)


def _home(module, name):
    """The module where `name` (listed in `module`'s __all__) is documented.

    A class or function is documented in the public module that defines and lists
    it; anything else (a value, or code re-exported from a private module such as
    ``cellnb.models._sam``) in the first public module that lists it.
    """
    obj = getattr(module, name)
    defined = getattr(obj, "__module__", None)
    if (inspect.isclass(obj) or inspect.isfunction(obj)) and defined in API_MODULES \
            and name in _public_names(importlib.import_module(defined)):
        return defined
    if not inspect.ismodule(obj):
        for other in API_MODULES:
            candidate = importlib.import_module(other)
            if name in _public_names(candidate) and getattr(candidate, name) is obj:
                return other
    return module.__name__


#: id of every documented object -> its documented name (filled with the API pages).
DOCUMENTED: dict[int, str] = {}
#: last part of a documented name -> the documented names ending in it.
BY_SHORT_NAME: dict[str, list[str]] = {}


def _register(full_name, obj):
    if inspect.isclass(obj) or inspect.isfunction(obj):
        DOCUMENTED.setdefault(id(obj), full_name)
    BY_SHORT_NAME.setdefault(full_name.rsplit(".", 1)[-1], []).append(full_name)


def _write_api_pages():
    folder = DOCS / "api"
    folder.mkdir(exist_ok=True)
    for module_name in API_MODULES:
        module = importlib.import_module(module_name)
        own = [n for n in _public_names(module) if _home(module, n) == module_name]
        for n in own:
            _register(f"{module_name}.{n}", getattr(module, n))
        elsewhere = [n for n in _public_names(module) if _home(module, n) != module_name]
        lines = [module_name, "=" * len(module_name), "",
                 f".. automodule:: {module_name}", "   :no-members:", "",
                 f".. currentmodule:: {module_name}", ""]
        if own:
            lines += [".. autosummary::", "   :toctree: generated", "   :nosignatures:", ""]
            lines += [f"   {n}" for n in own] + [""]
        if elsewhere:
            lines += ["Also importable from here:", ""]
            lines += [f"- :py:obj:`{module_name}.{n} <{_home(module, n)}.{n}>`"
                      for n in elsewhere] + [""]
        _write_if_changed(folder / f"{module_name}.rst", "\n".join(lines))
    top = importlib.import_module("cellnb")
    verbs = [n for n in top.__all__ if n not in top._SUBMODULES and n != "__version__"]
    lines = ["cellnb (the verbs)", "==================", "",
             ".. automodule:: cellnb", "   :no-members:", "",
             ".. currentmodule:: cellnb", "",
             "The pipeline's verbs, importable from the top level "
             "(``cellnb.locate`` is the function; its helpers live in the module of the "
             "same name):", "", ".. autosummary::", "   :nosignatures:", ""]
    lines += [f"   ~{getattr(top, n).__module__.removeprefix('cellnb.')}.{n}"
              for n in verbs] + [""]
    lines += ["Modules", "-------", "", ".. toctree::", "   :maxdepth: 1", ""]
    lines += [f"   {m}" for m in API_MODULES] + [""]
    _write_if_changed(folder / "index.rst", "\n".join(lines))


def _write_if_changed(path, text):
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def check_docstrings():
    """Every public name (a public class's public methods included) without a docstring."""
    missing = []
    for module_name in ["cellnb", *API_MODULES]:
        module = importlib.import_module(module_name)
        if not inspect.getdoc(module):
            missing.append(module_name)
        if module_name == "cellnb":
            continue
        attr_docs = _attr_docs(module_name)
        for name in _public_names(module):
            if _home(module, name) != module_name:
                continue
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                if not _own_doc(obj):
                    missing.append(f"{module_name}.{name}")
                if inspect.isclass(obj):
                    missing += [f"{module_name}.{name}.{m}" for m in _undocumented_members(obj)]
            elif ("", name) not in attr_docs and not inspect.ismodule(obj):
                missing.append(f"{module_name}.{name} (data: document it with a #: comment)")
    return missing


def _attr_docs(module_name):
    """The ``#:`` comments of a module's values, as autodoc reads them."""
    from sphinx.pycode import ModuleAnalyzer

    return ModuleAnalyzer.for_module(module_name).find_attr_docs()


def _own_doc(obj):
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    return bool(doc and doc.strip())


def _undocumented_members(cls):
    out = []
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        target = member.fget if isinstance(member, property) else member
        if isinstance(target, (staticmethod, classmethod)):
            target = target.__func__
        if inspect.isfunction(target) and not (target.__doc__ or "").strip():
            out.append(name)
    return out


def _canonical(target, module_name):
    """The documented name `target` means, seen from `module_name`, or None.

    ``cellnb.TrainedModel`` (a re-export) means ``cellnb.trained.TrainedModel``;
    ``SamModel.embed`` seen from ``cellnb.segment`` means
    ``cellnb.models.SamModel.embed``; an attribute without a page of its own
    (a dataclass field) means its class.
    """
    head, *tail = target.split(".")
    candidates = ([f"{module_name}.{target}"] if module_name else []) + [
        target, f"cellnb.{target}"]
    homes = BY_SHORT_NAME.get(head, [])
    if len(homes) == 1:  # a name documented once: SamModel -> cellnb.models.SamModel
        candidates.append(".".join([homes[0], *tail]))
    for dotted in candidates:
        parts = dotted.split(".")
        if parts[0] != "cellnb":
            continue
        obj, name = importlib.import_module("cellnb"), ["cellnb"]
        for depth, part in enumerate(parts[1:], start=1):
            child = getattr(obj, part, None)
            if child is None:
                try:
                    child = importlib.import_module(".".join(parts[:depth + 1]))
                except ImportError:
                    break
            obj = child
            home = DOCUMENTED.get(id(obj))
            name = [home] if home else [*name, part]
        else:
            return ".".join(name)
        if name and name[0] in DOCUMENTED.values() and len(parts) - depth <= 1:
            return name[0]  # an attribute of a documented class: the class's page
    return None


def _resolve_public_alias(app, env, node, contnode):
    """Resolve ``cellnb.train``-style names (re-exports, short names) to the documented object."""
    if node.get("refdomain") != "py":
        return None
    target = _canonical(node["reftarget"], node.get("py:module"))
    if target is None or target == node["reftarget"]:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(env, node["refdoc"], app.builder, "obj", target, node, contnode)


def _config_inited(app, config):
    # before Sphinx looks for source files: the generated pages must be there to be found
    # (and for autosummary to make their stubs)
    # the tutorials run in the quick configuration, drawing with the notebook backend
    os.environ.setdefault("CELLNB_QUICK", "1")
    os.environ.pop("MPLBACKEND", None)
    _copy_tutorials()
    _write_api_pages()


def _builder_inited(app):
    for name in check_docstrings():
        logger.warning(f"public name without a docstring: {name}", type="cellnb",
                       subtype="docstring")


def setup(app):
    app.connect("config-inited", _config_inited)
    app.connect("builder-inited", _builder_inited)
    app.connect("missing-reference", _resolve_public_alias)
    return {"parallel_read_safe": True}
