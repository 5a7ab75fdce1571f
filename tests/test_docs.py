"""The documentation's rule, checked without building the site: every public name is documented.

``make docs`` (run by ``make test``) builds the site with warnings as errors;
these tests check its name rule on its own and that the rule catches a
missing docstring.
"""

import importlib.util
import sys
import types
from pathlib import Path

import pytest

pytest.importorskip("sphinx")

CONF = Path(__file__).parent.parent / "docs" / "conf.py"


@pytest.fixture(scope="module")
def conf():
    spec = importlib.util.spec_from_file_location("cellnb_docs_conf", CONF)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_name_has_a_docstring(conf):
    assert conf.check_docstrings() == []


def test_every_public_module_has_an_api_page(conf):
    import pkgutil

    import cellnb

    public = {m.name for m in pkgutil.walk_packages(cellnb.__path__, "cellnb.")
              if not any(p.startswith("_") for p in m.name.split(".")[1:])}
    assert public - {"cellnb.__main__"} == set(conf.API_MODULES)


def test_a_missing_docstring_is_caught(conf, monkeypatch):
    fake = types.ModuleType("cellnb.fake_module")
    fake.__doc__ = "A module."

    def documented():
        """Has one."""

    def bare():
        pass

    class Thing:
        """A class."""

        def method(self):
            pass

        @property
        def size(self):
            return 1

    for obj in (documented, bare, Thing):
        obj.__module__ = fake.__name__
        setattr(fake, obj.__name__, obj)
    fake.__all__ = ["documented", "bare", "Thing", "VALUE"]
    fake.VALUE = (1, 2)  # no #: comment
    fake.__file__ = __file__
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setattr(conf, "API_MODULES", [fake.__name__])
    monkeypatch.setattr(conf, "_attr_docs", lambda name: {})
    assert conf.check_docstrings() == [
        "cellnb.fake_module.bare", "cellnb.fake_module.Thing.method",
        "cellnb.fake_module.Thing.size",
        "cellnb.fake_module.VALUE (data: document it with a #: comment)"]
