"""tests/mutation.py's targets name functions and tests that exist: code moved or renamed since a target was written
would make mutmut stop on that target (a function not found), or run fewer tests than it names (a test not collected,
a -k word that selects nothing), and count surviving mutants as killed or killed ones as survivors."""

import ast
import functools
import importlib.util
import re
from pathlib import Path

import pytest
from conftest import ROOT

spec = importlib.util.spec_from_file_location("mutation", ROOT / "tests" / "mutation.py")
mutation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mutation)


@functools.cache
def defined_tests(path) -> dict[str, ast.FunctionDef]:
    tree = ast.parse((ROOT / path).read_text())
    return {node.name: node for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


@functools.cache
def keywords(path) -> set[str]:
    """What a -k word can match in the file: its name, its tests' names and the strings of their parametrize marks
    (the ids pytest makes of them)."""
    names = {Path(path).name, *defined_tests(path)}
    for node in defined_tests(path).values():
        names |= {constant.value for decorator in node.decorator_list for constant in ast.walk(decorator)
                  if isinstance(constant, ast.Constant) and isinstance(constant.value, str)}
    return names


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
    if "-k" in target.tests:  # each word of the expression matches something in the files (a renamed test would not)
        files = [argument.partition("::")[0] for argument in target.tests if argument.startswith("tests/")]
        known = set().union(*map(keywords, files))
        words = re.findall(r"\w+", target.tests[target.tests.index("-k") + 1])
        unknown = [word for word in words if word not in ("and", "or", "not") and not any(word in k for k in known)]
        assert not unknown, f"{name}: -k words that match no test of {', '.join(files)}: {', '.join(unknown)}"


def test_a_function_not_in_its_file_stops_the_target():
    target = mutation.Target("callbacks/resume.py", ("EpochLengthResume.on_train_start", "prepare_run"), ())
    with pytest.raises(SystemExit, match="no function prepare_run"):
        mutation.target_lines(target)


def test_the_mutants_one_target_did_not_kill_are_tried_by_the_next_target_over_the_same_file(tmp_path):
    """Two targets in one clone (interpret, then darknet_system, over darknet_classifier.py): the second ran nothing,
    its lines cached as skipped by the first; phase_resume after phase_scheduler took the first's survivors in
    on_train_start as its own, though its tests kill them. Another file's are left for its own target's report."""
    import sqlite3
    cache = tmp_path / ".mutmut-cache"
    assert mutation.forget_not_killed(cache, ("a.py",)) == 0 and not cache.exists()
    statuses = ["skipped", "ok_killed", "bad_survived", "skipped", "untested", "bad_timeout", "ok_suspicious"]
    with sqlite3.connect(cache) as db:  # mutmut 2's tables, the columns read here
        db.execute("CREATE TABLE sourcefile (id INTEGER PRIMARY KEY, filename TEXT)")
        db.execute("CREATE TABLE line (id INTEGER PRIMARY KEY, sourcefile INTEGER, line_number INTEGER)")
        db.execute("CREATE TABLE mutant (id INTEGER PRIMARY KEY, line INTEGER, status TEXT)")
        db.executemany("INSERT INTO sourcefile (id, filename) VALUES (?, ?)", [(1, "a.py"), (2, "b.py")])
        db.executemany("INSERT INTO line (id, sourcefile, line_number) VALUES (?, ?, ?)", [(1, 1, 10), (2, 2, 10)])
        db.executemany("INSERT INTO mutant (line, status) VALUES (?, ?)",
                       [(line, status) for line in (1, 2) for status in statuses])
    assert mutation.forget_not_killed(cache, ("a.py",)) == 4
    with sqlite3.connect(cache) as db:
        assert [row[0] for row in db.execute("SELECT status FROM mutant ORDER BY id")] == [
            "untested", "ok_killed", "untested", "untested", "untested", "untested", "ok_suspicious", *statuses]
