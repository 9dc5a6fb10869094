"""tests/mutation.py's targets name functions and tests that exist: code moved or renamed since a target was written
would make mutmut stop on that target (a function not found) or count every mutant killed (a test not collected)."""

import ast
import functools
import importlib.util
import re

import pytest
from conftest import ROOT

spec = importlib.util.spec_from_file_location("mutation", ROOT / "tests" / "mutation.py")
mutation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mutation)


@functools.cache
def defined_tests(path):
    tree = ast.parse((ROOT / path).read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


@pytest.mark.parametrize("name", sorted(mutation.TARGETS))
def test_each_targets_functions_and_tests_exist(name):
    target = mutation.TARGETS[name]
    lines = mutation.target_lines(target)  # exits naming the functions not found
    assert all(lines[path] for path in target.paths), f"{name}: a file of it holds none of its functions"
    for argument in target.tests:
        if not argument.startswith("tests/"):
            continue  # -k / -m and their expressions
        path, _, test = argument.partition("::")
        assert (ROOT / path).is_file(), f"{name}: no {path}"
        if test:
            assert re.sub(r"\[.*\]$", "", test) in defined_tests(path), f"{name}: no {argument}"


def test_a_function_not_in_its_file_stops_the_target():
    target = mutation.Target("callbacks/resume.py", ("EpochLengthResume.on_train_start", "prepare_run"), ())
    with pytest.raises(SystemExit, match="no function prepare_run"):
        mutation.target_lines(target)
