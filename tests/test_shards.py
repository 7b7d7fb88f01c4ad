"""A backlog shared among several scan processes (service.shards): real child processes, one real
ledger, real signals."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.core.config import AgentConfig
from agent.core.naming import CRATE_NAME, IgnoreRules, sidecar_name
from agent.fs.turns import Turns
from agent.service.shards import FILES_PER_PROCESS, Claims, Unit, count_units, processes_for

from .conftest import REPO, agent_cli, opened_db, read_sidecar, run_scan, without_dac_override, write

#: Sessions and files each: enough that a child, which starts late, takes its part and is still
#: busy when it is signalled.
TREE = (60, 60)
FILES = TREE[0] * TREE[1]


def make_tree(drop: Path, sessions: int, files: int) -> None:
    for s in range(sessions):
        for f in range(files):
            write(drop / f"run-{s:02d}" / f"frame-{f:03d}.raw", os.urandom(64) + b"%d/%d" % (s, f))


def ledger_files(state: Path) -> list[tuple[str, str, int]]:
    with opened_db(state / "ledger.sqlite3") as db:
        return sorted(db.execute("SELECT relpath, sha256, version FROM files"))


def scan_cli(drop: Path, state: Path, processes: int, *extra: str) -> subprocess.CompletedProcess[str]:
    return agent_cli(
        "scan",
        str(drop),
        "--state-dir",
        str(state),
        *extra,
        env={"FAIR_AGENT_SCAN_PROCESSES": str(processes)},
    )


def row(summary: str, name: str) -> str:
    """A value of the scan's summary table."""
    found = re.search(rf"{re.escape(name)}\s*│\s*(.+?)\s*│", summary)
    assert found, summary
    return found.group(1)


def outputs(drop: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(drop)): p.read_bytes()
        for p in sorted(drop.rglob("*"))
        if p.name.endswith(".fair.json") or p.name == CRATE_NAME
    }


def test_units_are_counted_from_entries_without_outputs_temps_or_ignored_names(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    write(drop / "a" / "x.csv", "1")
    write(drop / "a" / "deeper" / "y.csv", "2")
    write(drop / "a" / sidecar_name("x.csv"), "{}")
    write(drop / "a" / "download.part", "partial")
    write(drop / "loose.raw", "3")
    write(drop / sidecar_name("loose.raw"), "{}")
    (drop / "b").mkdir()
    os.symlink(drop / "a", drop / "link")  # a symlink is never followed
    units = sorted(count_units(drop, IgnoreRules(AgentConfig().ignore)), key=lambda u: u.name)
    assert units == [Unit("a", 2), Unit("b", 0), Unit("link", 1), Unit("loose.raw", 1)]


def test_each_unit_is_claimed_once_and_new_ones_go_to_the_parent(tmp_path: Path) -> None:
    write(tmp_path / f"{Claims.PREFIX}1", "left by a crashed scan")
    units = ("a", "b", "c")
    path = Claims.create(tmp_path, len(units))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    parent = Claims(path, units, takes_unknown=True)
    child = Claims(path, units)  # its own descriptor, as another process has
    assert [child.claim("b"), parent.claim("a"), parent.claim("b"), child.claim("a"), child.claim("c")] == [
        True,
        True,
        False,
        False,
        True,
    ]
    assert parent.claim("new") and not child.claim("new")  # appeared after the count
    parent.close()
    child.close()


def test_a_folder_is_split_only_when_each_process_gets_enough_files() -> None:
    small = [Unit(f"s{i}", FILES_PER_PROCESS // 100) for i in range(100)]  # FILES_PER_PROCESS in all
    large = [Unit(f"s{i}", FILES_PER_PROCESS // 10) for i in range(100)]
    assert processes_for(small, 0, cores=4) == 1
    assert processes_for(large, 0, cores=4) == 4
    assert processes_for(large, 0, cores=2) == 2
    assert processes_for(small, 3, cores=2) == 3  # set outright: whatever the folder holds
    assert processes_for(large[:2], 8, cores=8) == 2  # never more processes than units
    assert processes_for([], 0, cores=8) == 1


def test_a_shared_scan_writes_what_one_process_writes(tmp_path: Path) -> None:
    one, shared = tmp_path / "one" / "drop", tmp_path / "shared" / "drop"
    make_tree(one, *TREE)  # enough that the child, which starts late, takes its part
    write(one / "loose.raw", b"loose")
    shutil.copytree(one, shared)  # copy2: the same mtimes, so the same sidecars
    alone = scan_cli(one, tmp_path / "one" / "state", 1)
    split = scan_cli(shared, tmp_path / "shared" / "state", 2, "--json-logs")
    assert alone.returncode == 0 and split.returncode == 0, split.stderr
    assert "scanning in 2 processes" in split.stderr and "scanning in" not in alone.stderr
    assert row(split.stdout, "files ingested") == str(FILES + 1)
    assert row(split.stdout, "sessions") == str(TREE[0] + 1)
    taken = re.fullmatch(r"2 \((\d+), (\d+)\)", row(split.stdout, "processes (sessions each)"))
    assert taken and int(taken[1]) > 0 and int(taken[2]) > 0, split.stdout  # both took part
    assert int(taken[1]) + int(taken[2]) == TREE[0] + 1
    assert ledger_files(tmp_path / "shared" / "state") == ledger_files(tmp_path / "one" / "state")
    assert outputs(shared) == outputs(one)
    assert len(outputs(shared)) == FILES + 1 + TREE[0]
    # Nothing left for a second scan, in either mode; the claims file is gone.
    again = scan_cli(shared, tmp_path / "shared" / "state", 2)
    assert again.returncode == 0 and row(again.stdout, "unchanged (not read)") == str(FILES + 1)
    assert not list((tmp_path / "shared" / "state").glob(f"{Claims.PREFIX}*"))


def test_claims_hold_between_processes(tmp_path: Path) -> None:
    """Three processes claim the same 100,000 units at the same moment: each is granted once."""
    units = tuple(f"u{i}" for i in range(100_000))
    path = Claims.create(tmp_path, len(units))
    (tmp_path / "units").write_text("\n".join(units))
    claimer = (
        "import sys; from pathlib import Path; from agent.service.shards import Claims; "
        "units = tuple(Path(sys.argv[2]).read_text().split()); claims = Claims(Path(sys.argv[1]), units); "
        "print('ready', flush=True); sys.stdin.readline(); "
        "print(sum(claims.claim(u) for u in units))"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", claimer, str(path), str(tmp_path / "units")],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for process in processes:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
    for process in processes:  # all at once
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    granted = [int(p.communicate(timeout=60)[0]) for p in processes]
    assert sum(granted) == len(units), granted
    assert path.read_bytes() == b"\1" * len(units)


RULE = """
match = ["*/*.csv"]
extractor = "tabular"
dataset_type = "kinetics"
[drift]
policy = "warn"
learn_sessions = 3
"""


def test_a_baseline_learns_from_exactly_its_sessions_across_processes(tmp_path: Path) -> None:
    """Without turns between the processes, a session of one judged while the other's completed
    the baseline says "learning" but is not learnt from: more than three would say so."""
    rules = write(tmp_path / "rules" / "kinetics.toml", RULE).parent
    drop, state = tmp_path / "drop", tmp_path / "state"
    for s in range(12):
        rows = "\n".join(f"{i},{i * s}" for i in range(20))
        write(drop / f"run-{s:02d}" / "plate.csv", f"Device: Reader\n\nTime,A1\n{rows}\n")
    done = scan_cli(drop, state, 2, "--rules", str(rules))
    assert done.returncode == 0, done.stderr
    statuses = [read_sidecar(drop / f"run-{s:02d}" / "plate.csv")["drift"]["status"] for s in range(12)]
    assert statuses.count("learning") == 3 and statuses.count("none") == 9, statuses
    with opened_db(state / "ledger.sqlite3") as db:
        (seen,) = db.execute(
            "SELECT sessions_seen FROM drift_baselines WHERE dataset_type = 'kinetics'"
        ).fetchone()
    assert seen == 3


async def test_a_learning_baseline_waits_for_another_process_turn(
    tmp_path: Path, config: AgentConfig
) -> None:
    """The test holds the turn as another process's batch would, from its drift check to its commit."""
    rules = write(tmp_path / "rules" / "kinetics.toml", RULE).parent
    config = config.model_copy(update={"rules_dir": rules})
    drop = tmp_path / "drop"
    write(drop / "run-1" / "plate.csv", "Device: Reader\n\nTime,A1\n0,1\n1,2\n")
    config.state_dir.mkdir()
    held = await Turns(config.state_dir, "drift-learning").take("kinetics")
    scanning = asyncio.create_task(run_scan(drop, config))
    await asyncio.sleep(0.5)
    assert not scanning.done() and not (drop / "run-1" / sidecar_name("plate.csv")).exists()
    held.release()
    report = await asyncio.wait_for(scanning, 30)
    assert report.ok and report.files_ingested == 1
    assert read_sidecar(drop / "run-1" / "plate.csv")["drift"]["status"] == "learning"


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def is_shard_worker(pid: int) -> bool:
    try:
        return b"agent.service.shardworker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False


def written_by(pid: int) -> int:
    """Bytes the process has written (its sidecars among them), from /proc."""
    try:
        io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    except FileNotFoundError:
        return 0
    return int(io["wchar"])


def start_scan(drop: Path, state: Path) -> tuple[subprocess.Popen[str], list[int]]:
    """A scan shared with one child, once the child has written a session's sidecars or so."""
    scan = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "scan", str(drop), "--state-dir", str(state)],
        env={**os.environ, "FAIR_AGENT_SCAN_PROCESSES": "2"},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = [pid for pid in children_of(scan.pid) if is_shard_worker(pid)]
        if len(workers) == 1 and written_by(workers[0]) > 50_000:
            return scan, workers
        time.sleep(0.01)
    scan.kill()
    raise AssertionError(f"the scan did not start its children: {scan.communicate()[1][-2000:]}")


def ingested_once(drop: Path, state: Path) -> None:
    """After a scan that was cut short, the next finishes it: every file once, nothing left over."""
    rerun = scan_cli(drop, state, 2)
    assert rerun.returncode == 0, rerun.stderr
    files = ledger_files(state)
    assert len(files) == FILES and {version for _, _, version in files} == {1}
    assert all(Path(sidecar_name(str(drop / relpath))).exists() for relpath, _, _ in files)
    assert not [p for p in drop.rglob("*") if ".fair-tmp" in p.name]


def gone(pids: list[int], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while any(is_shard_worker(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not any(is_shard_worker(pid) for pid in pids)


def test_a_killed_child_loses_nothing_and_the_next_scan_finishes(tmp_path: Path) -> None:
    drop, state = tmp_path / "drop", tmp_path / "state"
    make_tree(drop, *TREE)
    scan, workers = start_scan(drop, state)
    os.kill(workers[0], signal.SIGKILL)
    out, err = scan.communicate(timeout=120)
    assert scan.returncode == 1, err
    assert row(out, "processes that failed (run again)") == "1"
    assert "a scan process ended by SIGKILL before it finished" in err
    ingested_once(drop, state)


def test_children_end_when_the_scan_is_killed(tmp_path: Path) -> None:
    drop, state = tmp_path / "drop", tmp_path / "state"
    make_tree(drop, *TREE)
    scan, workers = start_scan(drop, state)
    scan.kill()  # kill -9: no chance to stop them itself; the kernel tells them
    scan.communicate(timeout=30)
    assert gone(workers, within_s=20), "a child outlived its scan"
    # They were ended, not done: left alone, they would have ingested everything.
    assert len(list(drop.rglob("*.fair.json"))) < FILES
    ingested_once(drop, state)


def test_an_interrupted_scan_stops_its_children(tmp_path: Path) -> None:
    drop, state = tmp_path / "drop", tmp_path / "state"
    make_tree(drop, *TREE)
    scan, workers = start_scan(drop, state)
    scan.send_signal(signal.SIGINT)  # Ctrl-C reaches the parent alone: its children have their own group
    _, err = scan.communicate(timeout=60)
    assert scan.returncode == 130, err
    assert "interrupted; work not committed is redone on the next run" in err
    assert gone(workers, within_s=1)
    assert "Traceback" not in err and "Exception in thread" not in err  # each child stopped cleanly
    ingested_once(drop, state)


def test_a_turn_file_someone_else_created_can_still_be_taken(tmp_path: Path) -> None:
    """root's scan leaves the drift turn files root's own: the service's user, who may not write
    them, must still take its turns (here: root without the capabilities that let it write any
    file, and the file read-only)."""
    turns = Turns(tmp_path, "drift-learning")
    asyncio.run(turns.take("kinetics")).release()
    turns.path("kinetics").chmod(0o444)
    taker = (
        "import asyncio, sys; from pathlib import Path; from agent.fs.turns import Turns; "
        "asyncio.run(Turns(Path(sys.argv[1]), 'drift-learning').take('kinetics')).release()"
    )
    cmd = without_dac_override([sys.executable, "-c", taker, str(tmp_path)])
    taken = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert taken.returncode == 0, taken.stderr
