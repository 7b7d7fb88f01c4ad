"""Start-up: a command imports what it needs and no more, so that the CLI answers at once.

Each case runs the entry point as the ``fair-agent`` script does (``agent.cli:main``) in a fresh
interpreter, which lists the modules it holds (``sys.modules``) as it exits. How long they take is
for bench/bench_startup.py to say; here, which they are. (``-X importtime`` would not do: it does not
report the modules that ``importlib.import_module`` brings, which is how the CLI loads a command.)
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import agent.commands
from agent.cli import COMMANDS

from .conftest import REPO

#: What the console script ``fair-agent`` runs (see [project.scripts] in pyproject.toml), and a hook
#: that writes the names of the modules imported to stderr at exit, --help's and --version's too.
_MARK = "modules imported:"
ENTRY_POINT = (
    f"import atexit, sys; atexit.register(lambda: print({_MARK!r}, *sorted(sys.modules), file=sys.stderr)); "
    "from agent.cli import main; sys.exit(main())"
)
#: The configuration's, the ledger's, the parsers', the terminal's and the metrics' libraries: each
#: costs milliseconds to tens of them, and --help and --version need none.
HEAVY = ("pydantic", "pandas", "h5py", "numpy", "aiosqlite", "sqlite3", "rich", "prometheus_client")


def run_entry_point(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """The result of ``fair-agent ARGS``, and every module it imported (``agent.cli``, ``rich.table``)."""
    result = subprocess.run(
        [sys.executable, "-c", ENTRY_POINT, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    report = result.stderr.splitlines()[-1] if result.stderr else ""
    assert report.startswith(_MARK), f"no list of modules in stderr:\n{result.stderr}"
    return result, set(report.removeprefix(_MARK).split())


def packages(modules: set[str]) -> set[str]:
    return {module.split(".")[0] for module in modules}


@pytest.mark.parametrize("args", [("--version",), ("--help",)], ids=" ".join)
def test_version_and_help_import_no_heavy_library(args: tuple[str, ...]) -> None:
    result, imported = run_entry_point(*args)
    assert result.returncode == 0, result.stderr
    assert "fair-agent" in result.stdout
    heavy = packages(imported) & set(HEAVY)
    assert not heavy, f"{' '.join(args)} imported {sorted(heavy)}"


def test_help_lists_every_command_with_its_help_line() -> None:
    result, _ = run_entry_point("--help")
    listed = " ".join(result.stdout.split())  # argparse wraps long help lines
    for command in COMMANDS:
        assert command.name in listed and " ".join(command.help.split()) in listed, command.name


def test_a_command_imports_its_own_module_and_not_the_others() -> None:
    result, modules = run_entry_point("scan", "--help")
    assert result.returncode == 0, result.stderr
    assert "agent.commands.scan" in modules
    others = {f"agent.commands.{c.name}" for c in COMMANDS if c.name != "scan"}
    assert not modules & others, sorted(modules & others)
    # The service's modules (the daemon, its metrics server) are the run command's alone.
    assert "agent.service.daemon" not in modules and "prometheus_client" not in modules


def test_an_empty_scan_imports_no_table_or_hdf5_library(tmp_path: Path) -> None:
    empty = tmp_path / "drop"
    empty.mkdir()
    result, imported = run_entry_point("scan", str(empty), "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 0, result.stderr
    assert "files seen" in result.stdout
    tables = packages(imported) & {"pandas", "h5py", "numpy"}
    assert not tables, f"an empty scan imported {sorted(tables)}"
    # The report does see what a command loads once it runs: the configuration, the ledger, the table.
    assert {"pydantic", "aiosqlite", "rich"} <= packages(imported)


def test_an_extraction_worker_starts_without_the_heavy_libraries() -> None:
    # Workers start with the agent's first extraction, and again after a parser crashes; each
    # pays its imports (pydantic alone was 80 ms). Tables and HDF5 bring theirs when a file needs them.
    result = subprocess.run(
        [sys.executable, "-c", "import sys, agent.extractors.worker; print(*sorted(sys.modules))"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    heavy = packages(set(result.stdout.split())) & set(HEAVY)
    assert not heavy, f"the extraction worker imported {sorted(heavy)}"


def test_every_command_module_is_in_the_table_of_commands() -> None:
    names = {m.name for m in pkgutil.iter_modules(agent.commands.__path__)}
    modules = {name: importlib.import_module(f"agent.commands.{name}") for name in names}
    with_command = {name for name, module in modules.items() if hasattr(module, "COMMAND")}
    assert with_command == {listed.name for listed in COMMANDS}
    for listed in COMMANDS:
        assert listed.load() is modules[listed.name].COMMAND
