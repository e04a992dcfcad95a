"""Every module's docstring example runs and prints what it says (the examples are documentation)."""

import doctest
import importlib
import pkgutil

import pytest

import repscope

MODULES = sorted(m.name for m in pkgutil.walk_packages(repscope.__path__, "repscope.")
                 if not m.name.endswith("__main__"))  # importing __main__ runs the CLI


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
