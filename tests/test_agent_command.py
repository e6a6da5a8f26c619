"""The command agent with small scripts as agents: real subprocesses in a real scratch copy."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import TRAIN, MakeProject, commit_all, git
from ratchet import guard
from ratchet.agents import make_agent
from ratchet.agents.command import CommandAgent, build_argv, parse_run, wants_stdin
from ratchet.agents.mutate import MutateAgent
from ratchet.agents.prompt import command_prompt
from ratchet.config import load_config
from ratchet.errors import RatchetError
from ratchet.experiment import HistoryEntry, ProposalContext, RepairRequest
from ratchet.traces import run_trace_tail, write_trace

SENTINEL = "sk-ant-api03-SENTINEL-command-agent-0123456789"
PY = shlex.quote(sys.executable)


def context(**changes: Any) -> ProposalContext:
    values: dict[str, Any] = {
        "experiment": 3,
        "editable_path": "train.py",
        "editable_text": TRAIN,
        "program": "Make the score lower. PROGRAM-MARKER\n",
        "metric_name": "score",
        "goal": "minimize",
        "best_metric": 0.2,
        "history": (HistoryEntry(0, "kept", 0.2, 0.0, "baseline"),),
    }
    values.update(changes)
    return ProposalContext(**values)


def script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


def agent_for(project: Path, run: str, **options: Any) -> CommandAgent:
    options.setdefault("timeout_s", 20.0)
    return CommandAgent(run, root=project, editable="train.py", locked=("prepare.py",), **options)


GOOD = """\
    import pathlib, sys
    prompt = pathlib.Path(sys.argv[1]).read_text()
    assert "PROGRAM-MARKER" in prompt and "train.py" in prompt, prompt
    assert pathlib.Path("prepare.py").exists()  # the locked files are there to read
    path = pathlib.Path("train.py")
    path.write_text(path.read_text().replace("LR = 0.5", "LR = 0.3"))
    pathlib.Path(".ratchet-description").write_text("lower LR 0.5 -> 0.3\\nmore words\\n")
    print("edited train.py")
"""


async def test_a_good_agent_edits_the_scratch_copy(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project()
    agent_script = script(tmp_path, "good.py", GOOD)
    agent = agent_for(project, f"{PY} {agent_script} {{prompt_file}}")
    proposal = await agent.propose(context())
    assert proposal.failure is None, proposal.trace
    assert proposal.edits == {"train.py": TRAIN.replace("LR = 0.5", "LR = 0.3")}
    assert proposal.description == "lower LR 0.5 -> 0.3"
    assert guard.check_proposal(proposal, "train.py", TRAIN) is None
    output = next(r for r in proposal.trace if r["kind"] == "output")
    assert output["exit_code"] == 0 and "edited train.py" in output["output"]
    # The user's tree is untouched, and the scratch copy is gone.
    assert (project / "train.py").read_text() == TRAIN
    assert git(project, "status", "--porcelain") == ""
    assert not list(Path(tempfile.gettempdir()).glob("ratchet-agent-*/project/train.py"))


async def test_the_edit_starts_from_the_current_best_not_the_working_tree(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project()
    best = TRAIN.replace("WIDTH = 8", "WIDTH = 12")
    agent_script = script(tmp_path, "good.py", GOOD)
    proposal = await agent_for(project, f"{PY} {agent_script} {{prompt_file}}").propose(
        context(editable_text=best)
    )
    assert proposal.edits == {"train.py": best.replace("LR = 0.5", "LR = 0.3")}


async def test_an_edit_to_a_locked_file_comes_back_so_the_guard_refuses_it(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project()
    agent_script = script(
        tmp_path,
        "cheat.py",
        """\
        import pathlib
        pathlib.Path("prepare.py").write_text("SCORE = 0  # cheated\\n")
        path = pathlib.Path("train.py")
        path.write_text(path.read_text().replace("LR = 0.5", "LR = 0.3"))
        pathlib.Path("notes").mkdir()
        pathlib.Path("notes/new.txt").write_text("new file")
        print("lowered LR (and fixed the evaluator)")
        """,
    )
    proposal = await agent_for(project, f"{PY} {agent_script}").propose(context())
    assert set(proposal.edits) == {"train.py", "prepare.py", "notes/new.txt"}
    assert proposal.edits["prepare.py"] == "SCORE = 0  # cheated\n"
    problem = guard.check_proposal(proposal, "train.py", TRAIN)
    assert problem is not None and "only train.py may change" in problem
    assert proposal.description == "lowered LR (and fixed the evaluator)"  # its last line
    assert (project / "prepare.py").read_text() == "# locked: the data and the evaluation\n"


async def test_a_deleted_or_committed_change_is_still_seen(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project()
    agent_script = script(
        tmp_path,
        "commits.py",
        """\
        import pathlib, subprocess
        pathlib.Path("prepare.py").unlink()
        path = pathlib.Path("train.py")
        path.write_text(path.read_text().replace("WIDTH = 8", "WIDTH = 10"))
        subprocess.run(["git", "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qam", "x"],
                       check=True)
        print("width 10")
        """,
    )
    proposal = await agent_for(project, f"{PY} {agent_script}").propose(context())
    assert proposal.edits == {
        "train.py": TRAIN.replace("WIDTH = 8", "WIDTH = 10"),
        "prepare.py": "",
    }


async def test_a_hanging_agent_is_killed_with_its_children_at_the_time_limit(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project()
    pids = tmp_path / "pids"
    agent_script = script(
        tmp_path,
        "hang.py",
        f"""\
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                 start_new_session=True)  # escapes the process group
        open({str(pids)!r}, "w").write(f"{{os.getpid()}} {{child.pid}}")
        print("thinking...", flush=True)
        time.sleep(60)
        """,
    )
    agent = agent_for(project, f"{PY} {agent_script}", timeout_s=1.0, kill_grace_s=0.5)
    started = time.monotonic()
    proposal = await agent.propose(context())
    assert time.monotonic() - started < 6
    assert proposal.failure is not None and "did not finish within 1s" in proposal.failure
    assert proposal.edits == {}
    output = next(r for r in proposal.trace if r["kind"] == "output")
    assert output["timed_out"] and "thinking..." in output["output"]
    for pid in map(int, pids.read_text().split()):
        assert not _alive(pid), pid


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


async def test_the_prompt_on_stdin_when_no_placeholder_is_given(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project()
    agent_script = script(
        tmp_path,
        "stdin.py",
        """\
        import pathlib, sys
        prompt = sys.stdin.read()
        assert "PROGRAM-MARKER" in prompt
        path = pathlib.Path("train.py")
        path.write_text(path.read_text().replace("LR = 0.5", "LR = 0.4"))
        print("some chatter")
        print("\\x1b[1mLR 0.5 -> 0.4\\x1b[0m")
        """,
    )
    assert wants_stdin(parse_run(f"{PY} {agent_script}"))
    proposal = await agent_for(project, f"{PY} {agent_script}").propose(context())
    assert proposal.failure is None
    assert proposal.description == "LR 0.5 -> 0.4"


async def test_the_prompt_as_one_argument_never_reaches_a_shell(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project()
    received = tmp_path / "received.json"
    hostile = "quote ' \" $(touch PWNED) `touch PWNED2`; touch PWNED3 && {prompt_file} {prompt}"
    agent_script = script(
        tmp_path,
        "argv.py",
        f"""\
        import json, pathlib, sys
        pathlib.Path({str(received)!r}).write_text(json.dumps(sys.argv[1:]))
        path = pathlib.Path("train.py")
        path.write_text(path.read_text().replace("LR = 0.5", "LR = 0.3"))
        """,
    )
    agent = agent_for(project, f"{PY} {agent_script} --message={{prompt}} {{editable}}")
    proposal = await agent.propose(context(program=hostile))
    assert proposal.failure is None
    argv = json.loads(received.read_text())
    assert len(argv) == 2 and argv[1] == "train.py"
    assert argv[0].startswith("--message=# Your task") and hostile in argv[0]
    assert not list(tmp_path.rglob("PWNED*")) and not list(project.rglob("PWNED*"))


def test_placeholders_are_substituted_once_inside_single_items() -> None:
    template = parse_run("agent --file={prompt_file} '{prompt}' x{editable}y")
    argv = build_argv(
        template, {"prompt_file": "/p", "prompt": "{prompt_file} a b", "editable": "e"}
    )
    assert argv == ["agent", "--file=/p", "{prompt_file} a b", "xey"]
    with pytest.raises(RatchetError, match="cannot be split"):
        parse_run("agent 'unclosed")
    with pytest.raises(RatchetError, match="empty"):
        parse_run("   ")


async def test_a_failing_or_idle_agent_is_recorded_not_raised(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project()
    failing = script(tmp_path, "fail.py", "import sys\nprint('no credits left')\nsys.exit(3)\n")
    idle = script(tmp_path, "idle.py", "print('nothing to do')\n")
    proposal = await agent_for(project, f"{PY} {failing}").propose(context())
    assert proposal.failure == "the agent command exited with code 3: no credits left"
    proposal = await agent_for(project, f"{PY} {idle}").propose(context())
    assert proposal.failure == "the agent command changed no file"
    proposal = await agent_for(project, "/nonexistent/agent {prompt_file}").propose(context())
    assert proposal.failure is not None and "cannot start" in proposal.failure


async def test_a_repair_hands_the_broken_file_and_the_traceback(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project()
    broken = TRAIN.replace("LR = 0.5", "LR = 0.5 +")
    agent_script = script(
        tmp_path,
        "repair.py",
        """\
        import pathlib, sys
        prompt = pathlib.Path(sys.argv[1]).read_text()
        assert "TRACE-MARKER" in prompt
        path = pathlib.Path("train.py")
        assert "LR = 0.5 +" in path.read_text()
        path.write_text(path.read_text().replace("LR = 0.5 +", "LR = 0.5"))
        print("fix the syntax error")
        """,
    )
    repair = RepairRequest(broken, "LR tweak", "SyntaxError TRACE-MARKER", 1)
    proposal = await agent_for(project, f"{PY} {agent_script} {{prompt_file}}").propose(
        context(repair_of=repair)
    )
    assert proposal.failure is None, proposal.trace
    assert proposal.edits == {"train.py": TRAIN}


async def test_the_key_in_the_agents_output_is_redacted(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project()
    agent_script = script(
        tmp_path,
        "leak.py",
        """\
        import os, pathlib
        key = os.environ["MY_KEY"]
        print("using key", key)
        path = pathlib.Path("train.py")
        path.write_text(path.read_text().replace("LR = 0.5", "LR = 0.3"))
        print("LR 0.3 with", key)
        """,
    )
    env = {**os.environ, "MY_KEY": SENTINEL}
    agent = agent_for(project, f"{PY} {agent_script}", environ=env, api_key_env="MY_KEY")
    proposal = await agent.propose(context())
    assert proposal.failure is None
    assert SENTINEL not in repr(proposal) and SENTINEL not in json.dumps(proposal.trace)
    folder = project / ".ratchet"
    write_trace(folder, 1, proposal.trace, agent.secrets)
    assert SENTINEL not in (folder / "traces" / "1.jsonl").read_text()


def test_make_agent_builds_the_command_agent(make_project: MakeProject) -> None:
    config = f"""\
[loop]
editable = "train.py"
locked = ["prepare.py"]
command = "{sys.executable} train.py"

[metric]
name = "score"

[agent]
kind = "command"
run = "claude -p {{prompt_file}}"
timeout = "90s"
"""
    project = make_project(config=config.replace("{", "{{").replace("}", "}}"))
    agent = make_agent(load_config(project))
    assert isinstance(agent, CommandAgent)
    assert agent.template == ["claude", "-p", "{prompt_file}"] and agent.timeout_s == 90.0
    assert agent.locked == ("prepare.py",)


# --- examples/agentic: a task agent improved by the loop -------------------------------------

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "agentic"


def _example_project(tmp_path: Path) -> Path:
    root = tmp_path / "agentic"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", "failures.txt"))
    toml = root / "ratchet.toml"
    toml.write_text(toml.read_text().replace('"python ', f'"{sys.executable} '))
    git(root, "init", "-q", "-b", "main")
    commit_all(root)
    return root


def test_the_agentic_evaluator_writes_per_case_failure_traces(tmp_path: Path) -> None:
    root = _example_project(tmp_path)
    done = subprocess.run(
        [sys.executable, "evaluate.py"], cwd=root, capture_output=True, text=True, check=True
    )
    assert "accuracy:        0.560000" in done.stdout
    trace = (root / "failures.txt").read_text()
    assert trace.startswith("22 of 50 tickets failed")
    assert "case 9: 'You billed my old account" in trace
    assert "expected billing, got account" in trace and "MIN_SCORE" in trace
    config = load_config(root)
    assert config.metric.trace == "failures.txt" and config.metric.eval is not None
    # What the engine hands the agent (HistoryEntry.trace_tail) reaches both agents' prompts.
    tail = run_trace_tail(root, config.metric.trace, limit_chars=600)
    assert tail.startswith("22 of 50 tickets failed") and tail.endswith("is not shown)")
    assert run_trace_tail(root, "../outside.txt") == "" and run_trace_tail(root, None) == ""
    entry = HistoryEntry(1, "discarded", 0.56, 0.0, "MIN_SCORE 1.05 -> 1.1", trace_tail=tail)
    text = command_prompt(context(history=(entry,)))
    assert "What recent experiments reported" in text and "case 2: 'Where can I" in text


def _accuracy(root: Path) -> float:
    done = subprocess.run(
        [sys.executable, "evaluate.py"], cwd=root, capture_output=True, text=True, check=True
    )
    return float(done.stdout.split("accuracy:")[1].split()[0])


async def test_the_mutate_agent_improves_the_agentic_example(tmp_path: Path) -> None:
    """A small keep-or-revert loop of its own (the engine's is tested elsewhere): the offline
    agent, the real locked evaluator, the module-level constants of the task agent."""
    root = _example_project(tmp_path)
    editable = root / "triage.py"
    best_text, best = editable.read_text(), _accuracy(root)
    assert best == pytest.approx(0.56)
    agent = MutateAgent(seed=0)
    history = [HistoryEntry(0, "kept", best, 0.0, "baseline")]
    kept = []
    for number in range(1, 9):
        proposal = await agent.propose(
            context(
                experiment=number,
                proposal=number,
                editable_path="triage.py",
                editable_text=best_text,
                metric_name="accuracy",
                goal="maximize",
                best_metric=best,
                history=tuple(history),
            )
        )
        assert proposal.failure is None
        editable.write_text(proposal.edits["triage.py"])
        value = _accuracy(root)
        status = "kept" if value > best else "discarded"
        history.append(HistoryEntry(number, status, value, value - best, proposal.description))
        if value > best:
            best_text, best = proposal.edits["triage.py"], value
            kept.append(proposal.description)
        editable.write_text(best_text)
    assert kept and best > 0.6, history


def test_an_agent_left_by_a_killed_loop_is_stopped_at_the_next_start(
    make_project: MakeProject, tmp_path: Path
) -> None:
    """kill -9 of `ratchet run` leaves an unsandboxed command agent (and a child it started
    in a session of its own) running with its scratch copy; the loop's next start stops them
    and removes the copy."""
    from conftest import CONFIG
    from ratchet.engine import Engine

    pids = tmp_path / "pids"
    agent_script = script(
        tmp_path,
        "linger.py",
        f"""\
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                                 start_new_session=True)
        open({str(pids)!r}, "w").write(f"{{os.getpid()}} {{child.pid}}")
        time.sleep(300)
        """,
    )
    config = CONFIG.replace(
        'kind = "mutate"\nseed = 0',
        f'kind = "command"\nrun = "{sys.executable} {agent_script}"\n\n[sandbox]\nkind = "none"',
    )
    root = make_project(config=config)
    loop = subprocess.Popen(
        [sys.executable, "-m", "ratchet.cli", "-C", str(root), "run", "--tag", "k"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while not (pids.exists() and len(pids.read_text().split()) == 2):
            assert loop.poll() is None and time.monotonic() < deadline, "the agent never started"
            time.sleep(0.1)
    finally:
        loop.kill()
        loop.wait(timeout=30)
    agents = [int(p) for p in pids.read_text().split()]
    try:
        assert all(_alive(pid) for pid in agents), "the kill took the agent with it"
        scratch = list(Path(tempfile.gettempdir()).glob("ratchet-agent-*"))
        engine = Engine(load_config(root), tag="k")
        mine = [p for p in scratch if engine.loop_id in p.name]
        assert mine, "the agent's scratch copy is not named for its loop"
        engine.lock.acquire()
        try:
            engine.opening.open_branch()  # what the next start does first
        finally:
            engine.lock.release()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in agents) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in agents), "the next start did not stop the agent"
        assert not any(p.exists() for p in mine), "its scratch copy was left behind"
    finally:
        for pid in agents:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
