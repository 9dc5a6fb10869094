"""Mutation testing of the algorithmic core with mutmut 2 (`pip install -e .[dev]`).

    python tests/mutation.py                  # every target, one after the other
    python tests/mutation.py wgan augment     # some of them
    python tests/mutation.py --list           # the targets, their functions and their tests
    python tests/mutation.py --report         # per target: killed / mutants (score), then each survivor's change

Each target (tests/mutation_targets.py) names a file, the functions in it that hold the algorithm (losses, steps,
decay formulas, augmentation...), and the few fast test files that check them: mutmut changes one thing at a time in
those functions only (`pre_mutation` below skips every other line) and runs only those tests, so a mutant costs
seconds. The tests run in a child forked from a server that has imported torch, Lightning and pytest once (the
project's own modules are imported fresh, mutated, in each child): importing them took most of a mutant's time.
mutmut edits the file in place and puts it back after each mutant: do not edit the code while it runs. Results are
cached in .mutmut-cache; a run checks again only what changed or survived. String mutations (error messages) are not
made, nor mutations of logging lines.
"""

import ast
import os
import sys
from pathlib import Path

from mutation_targets import TARGETS, Target

ROOT = Path(__file__).resolve().parents[1]
_lines: dict[str, dict[str, set[int]]] = {}  # target -> its file -> 0-based line numbers mutmut may change


def target_lines(target: Target) -> dict[str, set[int]]:
    """Per file of the target, the 0-based line numbers of the bodies of its functions (docstrings excluded)."""
    found, lines = set(), {}
    for path in target.paths:
        lines[path] = function_lines(path, target.functions, found)
    if missing := set(target.functions) - found:
        raise SystemExit(f"{', '.join(target.paths)} have no function {', '.join(sorted(missing))}: update TARGETS in "
                         f"tests/mutation.py")
    return lines


def function_lines(path: str, functions: tuple[str, ...], found: set[str]) -> set[int]:
    """0-based line numbers of the bodies of those of `functions` in `path` (added to `found`)."""
    tree = ast.parse((ROOT / path).read_text())
    lines = set()

    def visit(node, prefix=""):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.ClassDef)):
                name = prefix + child.name
                if isinstance(child, ast.FunctionDef) and name in functions:
                    found.add(name)
                    body = child.body[1:] if ast.get_docstring(child) else child.body
                    for statement in body:
                        lines.update(range(statement.lineno - 1, statement.end_lineno))
                visit(child, name + ".")

    visit(tree)
    return lines


LOGGING = ("self.log(", "self.log_dict(", "self.log_visuals(", "self.log_samples(")


def pre_mutation(context) -> None:  # mutmut's hook (tests/mutmut_config.py), called before each mutant
    name = os.environ["MUTATION_TARGET"]  # mutmut checks mutants in a spawned process: the target comes this way
    if name not in _lines:
        _lines[name] = target_lines(TARGETS[name])
    lines = _lines[name].get(os.path.relpath(context.filename, ROOT))
    if lines is None or context.current_line_index not in lines:
        context.skip = True
    elif context.current_source_line.strip().startswith(LOGGING):  # what is logged, not what is trained
        context.skip = True


def serve(address: str) -> None:
    """Import the heavy third-party modules once, then fork a pytest run per request (never the project's)."""
    import signal
    import socket

    import jsonargparse  # noqa: F401
    import lightning  # noqa: F401
    import matplotlib
    import numpy  # noqa: F401
    import PIL.Image  # noqa: F401
    import pytest
    import torch
    import torchmetrics  # noqa: F401
    import torchvision  # noqa: F401

    matplotlib.use("Agg")
    torch.set_num_threads(1)
    import tempfile
    # bytecode neither written nor read: a mutant of the same size, written in the same second as a .pyc of
    # the original (say, by a test run beside this one), would otherwise run as the original
    sys.dont_write_bytecode, sys.pycache_prefix = True, tempfile.mkdtemp(prefix="mutmut-pycache-")
    assert not any(m.split(".")[0] in ("callbacks", "datamodules", "lightning_modules", "train") for m in sys.modules)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reaped by the kernel
    server = socket.socket(socket.AF_UNIX)
    server.bind(address)
    server.listen(1)
    while True:
        connection, _ = server.accept()
        args = connection.makefile().readline().rstrip("\n").split("\0")
        if os.fork() == 0:
            server.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            # Python's Ctrl-C handler, which the Ctrl-C tests hand back to: a run started in the background of a
            # script (nohup ... &) inherits SIGINT ignored, and a second Ctrl-C would be lost
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.alarm(900)  # a mutant that loops forever after mutmut gave up on it
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1), os.dup2(null.fileno(), 2)
            try:
                code = int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", *args]))
            except BaseException:
                code = 3
            connection.sendall(f"{code}\n".encode())
            os._exit(0)
        connection.close()


def client(address: str, args: list[str]) -> int:
    """mutmut's test command: 0 when the tests pass; 1 (killed) when they fail or cannot even be collected."""
    import socket

    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(address)
        connection.sendall(("\0".join(args) + "\n").encode())
        answer = connection.makefile().readline().strip()
    return 0 if answer == "0" else 1


def forget_not_killed(cache: Path, paths: tuple[str, ...]) -> int:
    """mutmut caches the mutants `pre_mutation` skipped (lines outside that target's functions) as 'skipped', and a
    target's survivors and timeouts, and never tries them again while the test files are unchanged: a later target
    over the same file found its own lines skipped, and ran nothing, or took an earlier target's survivors (another
    test command) as its own (phase_resume's after phase_scheduler's, 2026-12-02). Those of the target's files
    (`paths`) are made untested again before it runs (another file's stay, for its own target's report); returns how
    many."""
    import sqlite3

    if not cache.exists():
        return 0
    with sqlite3.connect(cache) as db:
        return db.execute(
            "UPDATE mutant SET status = 'untested' WHERE status IN ('skipped', 'bad_survived', 'bad_timeout') AND "
            f"line IN (SELECT l.id FROM line l JOIN sourcefile f ON l.sourcefile = f.id WHERE f.filename IN "
            f"({', '.join('?' * len(paths))}))", paths).rowcount


def run(name: str, address: str) -> int:
    import time

    from mutmut.__main__ import climain

    target = TARGETS[name]
    forget_not_killed(ROOT / ".mutmut-cache", target.paths)
    os.environ["MUTATION_TARGET"] = name
    _lines[name] = target_lines(target)
    runner = " ".join([sys.executable, str(Path(__file__).relative_to(ROOT)), "--client", address,
                       *(f'"{t}"' if " " in t else t for t in target.tests)])
    print(f"== {name}: {', '.join(target.paths)} ({sum(map(len, _lines[name].values()))} lines), tests: "
          f"{' '.join(target.tests)}", flush=True)
    start = time.perf_counter()
    try:
        climain.main(["run", "--paths-to-mutate", ",".join(target.paths), "--runner", runner, "--tests-dir", "tests",
                      "--disable-mutation-types", "string,fstring", "--simple-output", "--no-progress"],
                     standalone_mode=False)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        print(f"== {name}: {time.perf_counter() - start:.0f} s", flush=True)
    return 0


def report() -> int:
    """Score per target from .mutmut-cache, and the changed line of every mutant not killed."""
    import sqlite3

    from mutmut import Context, RelativeMutationID, mutate

    rows = sqlite3.connect(ROOT / ".mutmut-cache").execute(
        "SELECT f.filename, l.line, l.line_number, m.\"index\", m.status FROM mutant m JOIN line l ON m.line = l.id"
        " JOIN sourcefile f ON l.sourcefile = f.id").fetchall()
    sources: dict[str, str] = {}  # file -> its text, read once for all its survivors
    for name, target in TARGETS.items():
        lines = target_lines(target)
        mine = [r for r in rows if r[2] in lines.get(r[0], ()) and r[4] != "skipped"]
        if not mine:
            print(f"{name}: not run")
            continue
        killed = sum(r[4] in ("ok_killed", "ok_suspicious") for r in mine)  # suspicious: killed, but slowly
        untested = sum(r[4] == "untested" for r in mine)
        print(f"{name}: {killed} / {len(mine) - untested} killed ({100 * killed / max(1, len(mine) - untested):.0f}%)"
              + (f", {untested} not yet tested" if untested else ""))
        for filename, line, number, index, status in sorted(mine, key=lambda r: (r[0], r[2], r[3])):
            if status in ("ok_killed", "ok_suspicious", "untested"):
                continue
            source = sources.setdefault(filename, (ROOT / filename).read_text())
            context = Context(source=source, filename=filename, dict_synonyms=[],
                              mutation_id=RelativeMutationID(line, index, number))
            pairs = zip(source.split("\n"), mutate(context)[0].split("\n"), strict=False)
            changed = next((new for old, new in pairs if old != new), "(line changed since)")
            print(f"  {status} {filename}:{number + 1}\n    - {line.strip()}\n    + {changed.strip()}")
    return 0


def main(argv: list[str]) -> int:
    if argv == ["--report"]:
        return report()
    if argv[:1] == ["--serve"]:
        return serve(argv[1])
    if argv[:1] == ["--client"]:
        return client(argv[1], argv[2:])
    if argv == ["--list"]:
        for name, t in TARGETS.items():
            target_lines(t)  # each function found
            print(f"{name}: {', '.join(t.paths)} [{', '.join(t.functions)}] <- {' '.join(t.tests)}")
        return 0
    unknown = [a for a in argv if a not in TARGETS]
    if unknown:
        raise SystemExit(f"unknown target {', '.join(unknown)}; use some of {', '.join(TARGETS)} (or none for all)")
    os.chdir(ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # no cached bytecode of a mutant
    import subprocess
    import tempfile
    import time

    with tempfile.TemporaryDirectory() as folder:
        address = os.path.join(folder, "pytest.sock")
        server = subprocess.Popen([sys.executable, __file__, "--serve", address])
        try:
            while not os.path.exists(address):
                if server.poll() is not None:
                    raise SystemExit("the test server did not start")
                time.sleep(0.2)
            return max([run(name, address) for name in argv or TARGETS], default=0)
        finally:
            server.terminate()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
