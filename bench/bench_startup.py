"""Start-up of the ``fair-agent`` command, each figure beside baselines measured in the same run.

Every figure is the best of --repeat runs of the real entry point in a subprocess (after one run
that is not timed), from the start of the process to its exit:

  version  `fair-agent --version`: target <= 0.2 s. Beside it, the interpreter alone
           (`python -c pass`), the interpreter importing asyncio, and `python -c "import agent.cli"`.
  scan     `fair-agent scan EMPTY --state-dir NEW` (an empty folder, a new state directory each run,
           so that every run creates its ledger): target <= 0.35 s.
  status   `fair-agent status` against the ledger of a scanned folder: it should feel as instant as
           an empty scan, so the same 0.35 s.

Beside scan and status, the interpreter importing the libraries they cannot start without
(pydantic's models for the configuration, aiosqlite for the ledger, rich for what they print): a
part of their start-up that is not the agent's own code, and that no change to the agent can take
away while it keeps these libraries.

The agent runs in the environment it is given. With PYTHONDONTWRITEBYTECODE set, Python compiles
the agent's own modules at every start (an installed package has its bytecode), which costs about a
fifth of the scan's start; --cached-bytecode measures with a scratch bytecode cache instead
(PYTHONPYCACHEPREFIX under --dir), as an installed agent starts.

    python bench/bench_startup.py                  # all scenarios
    python bench/bench_startup.py version --repeat 9

``bench_version``, ``bench_empty_scan`` and ``bench_status`` are scenarios of benchkit: a driver
may run them with its own namespace, which needs ``dir`` (a scratch folder) and may have ``repeat``
and ``cached_bytecode``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchkit import run_scenarios

RUNS = 5
#: What scan and status import before any code of the agent's runs (see the module's text).
LIBRARIES = "from pydantic import BaseModel; import aiosqlite, rich.console"
VERSION_TARGET_S = 0.2
SCAN_TARGET_S = 0.35
STATUS_TARGET_S = 0.35


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=RUNS, help="timed runs per figure (best is kept)")
    parser.add_argument(
        "--cached-bytecode",
        action="store_true",
        help="cache the agent's bytecode (in --dir) as an installed package has it",
    )
    return run_scenarios(parser, {"version": bench_version, "scan": bench_empty_scan, "status": bench_status})


def bench_version(args: argparse.Namespace) -> list[tuple[str, bool]]:
    runs = _runs(args)
    python = sys.executable
    figures = {
        "python -c pass": best_of(runs, [python, "-c", "pass"], args),
        'python -c "import asyncio"': best_of(runs, [python, "-c", "import asyncio"], args),
        'python -c "import agent.cli"': best_of(runs, [python, "-c", "import agent.cli"], args),
        "fair-agent --version": best_of(runs, [*fair_agent(), "--version"], args),
        "fair-agent --help": best_of(runs, [*fair_agent(), "--help"], args),
    }
    _print(f"Start-up: --version, best of {runs}", figures, args)
    version = figures["fair-agent --version"]
    return [(f"fair-agent --version {version:.3f} s (<= {VERSION_TARGET_S} s)", version <= VERSION_TARGET_S)]


def bench_empty_scan(args: argparse.Namespace) -> list[tuple[str, bool]]:
    runs = _runs(args)
    empty = args.dir / "startup" / "empty"
    shutil.rmtree(empty, ignore_errors=True)
    empty.mkdir(parents=True)

    def scan() -> list[str]:
        state = Path(tempfile.mkdtemp(prefix="state-", dir=args.dir / "startup")) / "state"
        return [*fair_agent(), "scan", str(empty), "--state-dir", str(state)]

    figures = {
        **_baselines(runs, args),
        "fair-agent scan EMPTY --state-dir NEW": best_of(runs, scan, args),
    }
    _print(f"Start-up: a scan of an empty folder into a new ledger, best of {runs}", figures, args)
    took = figures["fair-agent scan EMPTY --state-dir NEW"]
    return [
        (f"fair-agent scan of an empty folder {took:.3f} s (<= {SCAN_TARGET_S} s)", took <= SCAN_TARGET_S)
    ]


def bench_status(args: argparse.Namespace) -> list[tuple[str, bool]]:
    runs = _runs(args)
    root = args.dir / "startup" / "status"
    shutil.rmtree(root, ignore_errors=True)
    for session in ("run-1", "run-2"):
        (root / "drop" / session).mkdir(parents=True)
        (root / "drop" / session / "notes.txt").write_text(f"{session}\n", encoding="utf-8")
    state = root / "state"
    _run([*fair_agent(), "scan", str(root / "drop"), "--state-dir", str(state)], args)
    status = [*fair_agent(), "status", "--state-dir", str(state)]
    figures = {
        **_baselines(runs, args),
        "fair-agent status": best_of(runs, status, args),
        "fair-agent status --json": best_of(runs, [*status, "--json"], args),
    }
    _print(f"Start-up: status of a ledger with two sessions, best of {runs}", figures, args)
    took = figures["fair-agent status"]
    return [(f"fair-agent status {took:.3f} s (<= {STATUS_TARGET_S} s)", took <= STATUS_TARGET_S)]


# --- running and timing ------------------------------------------------------------------------


def _baselines(runs: int, args: argparse.Namespace) -> dict[str, float]:
    return {
        "python -c pass": best_of(runs, [sys.executable, "-c", "pass"], args),
        f'python -c "{LIBRARIES}"': best_of(runs, [sys.executable, "-c", LIBRARIES], args),
    }


def fair_agent() -> list[str]:
    """The installed entry point beside this interpreter, as a user runs it; else the module."""
    script = Path(sys.executable).with_name("fair-agent")
    return [str(script)] if script.exists() else [sys.executable, "-m", "agent.cli"]


def best_of(runs: int, cmd: list[str] | Callable[[], list[str]], args: argparse.Namespace) -> float:
    """The shortest wall time of ``runs`` runs, after one untimed run (page cache, bytecode cache).

    ``cmd`` may be a function giving each run its own command line (a new state directory).
    """

    def make() -> list[str]:
        return cmd() if callable(cmd) else cmd

    _run(make(), args)
    times = []
    for _ in range(runs):
        argv = make()
        start = time.perf_counter()
        _run(argv, args)
        times.append(time.perf_counter() - start)
    return min(times)


def _run(cmd: list[str], args: argparse.Namespace) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, env=_environment(args))
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")


def _environment(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    if getattr(args, "cached_bytecode", False):
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(args.dir / "pycache")
    return env


def _bytecode(args: argparse.Namespace) -> str:
    if getattr(args, "cached_bytecode", False):
        return "agent bytecode cached (scratch PYTHONPYCACHEPREFIX)"
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return "PYTHONDONTWRITEBYTECODE set: the agent's modules are compiled at every start"
    return "bytecode as the environment caches it"


def _runs(args: argparse.Namespace) -> int:
    return int(getattr(args, "repeat", RUNS))


def _print(title: str, figures: dict[str, float], args: argparse.Namespace) -> None:
    print(f"\n{title} ({_bytecode(args)})")
    width = max(map(len, figures))
    for label, seconds in figures.items():
        print(f"  {label:<{width}} {seconds:6.3f} s")


if __name__ == "__main__":
    sys.exit(main())
