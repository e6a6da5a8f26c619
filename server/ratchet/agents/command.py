"""The `command` agent: any CLI coding agent (`claude -p {prompt_file}`, `aider
--message-file {prompt_file} {editable}`, `codex exec {prompt}`, a user's script).

It runs in a scratch copy of the project (a temporary folder holding the project's tracked
files, the editable file at the current best and program.md, made a git repository of its
own), never in the user's tree nor in the engine's worktrees. Files only the evaluator may
read (`[metric] eval_only`, holdout data) are never in it, and unless `[sandbox] kind =
"none"` the agent runs in a sandbox of its own (agents/confine.py) that hides the repository,
the project and `.ratchet/`. Every file it changes, adds or
deletes comes back in Proposal.edits, so the engine's guard refuses an edit outside the
editable file. The description is the first line of `.ratchet-description` if the agent
writes it, else the last line it printed; its output is the trace.

The command line is split with shlex and placeholders are substituted inside single argv
items; no shell ever sees the prompt. Without `{prompt_file}` or `{prompt}` the prompt goes
to the agent's stdin. A time limit kills the agent with all its children.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import RatchetError
from ..experiment import Proposal, ProposalContext
from ..redaction import redact, redact_text
from ..runners.processes import LOOP_VARIABLE, TOKEN_VARIABLE, kill_tree
from . import prompt as prompts
from .confine import AgentSandbox
from .prompt import DESCRIPTION_FILE
from .scratch import ProjectFiles, git_output

PLACEHOLDER = re.compile(r"\{(prompt_file|prompt|editable)\}")
OUTPUT_KEEP_BYTES = 200_000  # the end of the agent's output kept for the trace
DESCRIPTION_CHARS = 200
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
# What tools leave behind and is no edit: kept out of the change set.
_EXCLUDED = ("__pycache__/", "*.pyc", ".aider*", ".DS_Store")
_GIT_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY")


@dataclass(frozen=True)
class Reading:
    """What the agent's output says: its last line (the description when it wrote no
    description file), what it cost, and a problem in words (a CLI not logged in)."""

    last: str
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    problem: str | None = None


def parse_run(run: str) -> list[str]:
    """The `run` template as argv items; a RatchetError if it cannot be split."""
    try:
        argv = shlex.split(run)
    except ValueError as error:
        raise RatchetError(
            f"[agent] run = {run!r} cannot be split into arguments: {error}"
        ) from None
    if not argv:
        raise RatchetError(
            '[agent] run is empty; give the agent\'s command, e.g. "claude -p {prompt_file}"'
        )
    return argv


def build_argv(template: Sequence[str], values: dict[str, str]) -> list[str]:
    """Each placeholder is replaced inside its own argv item, in one pass (a value that
    itself holds `{prompt}` is not substituted again)."""
    return [PLACEHOLDER.sub(lambda m: values[m.group(1)], item) for item in template]


def wants_stdin(template: Sequence[str]) -> bool:
    return not any("{prompt_file}" in item or "{prompt}" in item for item in template)


class CommandAgent:
    kind = "command"

    def __init__(
        self,
        run: str,
        *,
        root: Path,
        editable: str,
        locked: Sequence[str] = (),
        program: str = "program.md",
        timeout_s: float = 600.0,
        api_key_env: str = "ANTHROPIC_API_KEY",
        description_file: str = DESCRIPTION_FILE,
        environ: dict[str, str] | None = None,
        kill_grace_s: float = 2.0,
        hidden_files: Sequence[str] = (),
        sandbox: AgentSandbox | None = None,
        loop_id: str = "",
    ) -> None:
        self.template = parse_run(run)
        self.run = run
        self.root = root
        self.editable = editable
        self.locked = tuple(locked)
        self.program = program
        self.timeout_s = timeout_s
        self.description_file = description_file
        self.kill_grace_s = kill_grace_s
        self.hidden_files = tuple(hidden_files)  # the evaluator's alone: never copied
        self.sandbox = sandbox
        self.loop_id = loop_id
        self._environ = dict(os.environ if environ is None else environ)
        key = self._environ.get(api_key_env, "")
        self._secrets = [s for s in (key, self._environ.get("ANTHROPIC_API_KEY", "")) if s]

    @classmethod
    def from_config(cls, config: Config, **overrides: Any) -> CommandAgent:
        if not config.agent.run:
            raise RatchetError(
                'the command agent needs `run` in [agent], e.g. run = "claude -p {prompt_file}"'
            )
        options = cls.options(config, AgentSandbox.from_config(config, hidden_files(config)))
        options.update(overrides)
        return cls(config.agent.run, **options)

    @staticmethod
    def options(config: Config, sandbox: AgentSandbox | None) -> dict[str, Any]:
        """The constructor's options that `config` sets (a preset adds its own)."""
        return {
            "root": config.root,
            "editable": config.loop.editable,
            "locked": config.loop.locked,
            "program": config.loop.program,
            "timeout_s": config.agent.timeout_s,
            "api_key_env": config.agent.api_key_env,
            "hidden_files": hidden_files(config),
            "sandbox": sandbox,
        }

    @property
    def secrets(self) -> list[str]:
        return list(self._secrets)

    async def close(self) -> None:
        return None

    # --- one proposal ----------------------------------------------------------------------

    async def propose(self, context: ProposalContext) -> Proposal:
        started = time.monotonic()
        trace: list[dict[str, Any]] = []
        scratch = Path(tempfile.mkdtemp(prefix=scratch_prefix(self.loop_id)))
        reading = Reading("")
        try:
            edits, description, failure, reading = await self._propose_in(context, scratch, trace)
        except Exception as error:  # never raised: the loop goes on
            edits, description, failure = {}, "", f"the {self.kind} agent failed: {error}"
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)
        trace.append(
            {
                "kind": "result",
                "description": description,
                "failure": failure,
                "files": sorted(edits),
            }
        )
        secrets = self._secrets
        return Proposal(
            edits=edits,
            description=redact_text(description or "(no description)", secrets),
            trace=redact(trace, secrets),
            agent_seconds=time.monotonic() - started,
            cost_usd=reading.cost_usd,
            input_tokens=reading.input_tokens,
            output_tokens=reading.output_tokens,
            failure=redact_text(failure, secrets) if failure else None,
        )

    def read_output(self, output: str, exit_code: int | None) -> Reading:
        """The agent's output read: its last line. A preset reads its CLI's own format."""
        return Reading(_last_line(output))

    async def _propose_in(
        self, context: ProposalContext, scratch: Path, trace: list[dict[str, Any]]
    ) -> tuple[dict[str, str], str, str | None, Reading]:
        project = scratch / "project"
        project.mkdir()
        text = context.repair_of.broken_text if context.repair_of else context.editable_text
        base = await asyncio.to_thread(self._prepare, project, context, text)
        exit_code, timed_out, output = await self._run_agent(context, scratch, project, trace)
        reading = self.read_output(output, exit_code)
        failure = self._failure(reading, exit_code, timed_out)
        if failure is not None:
            return {}, "", failure, reading
        edits = await asyncio.to_thread(self._changes, project, base)
        description = self._description(project) or reading.last
        trace.append({"kind": "changes", "files": sorted(edits)})
        if not edits:
            return {}, description, "the agent command changed no file", reading
        return edits, description[:DESCRIPTION_CHARS], None, reading

    async def _run_agent(
        self, context: ProposalContext, scratch: Path, project: Path, trace: list[dict[str, Any]]
    ) -> tuple[int | None, bool, str]:
        """The agent's command on the scratch copy, its prompt in a file (or on stdin, where
        the command line asks for it): (exit code, timed out, output), each traced."""
        prompt_text = prompts.command_prompt(context, self.description_file)
        prompt_file = scratch / "prompt.md"
        prompt_file.write_text(prompt_text, encoding="utf-8")
        values = {
            "prompt_file": str(prompt_file),
            "prompt": prompt_text,
            "editable": context.editable_path,
        }
        argv = build_argv(self.template, values)
        use_stdin = wants_stdin(self.template)
        shown = build_argv(self.template, {**values, "prompt": "<prompt>"})
        trace.append(
            {
                "kind": "prompt",
                "argv": shown,
                "stdin": use_stdin,
                "cwd": "<scratch copy>",
                "prompt": prompt_text,
            }
        )
        exit_code, timed_out, output, seconds = await self._execute(
            argv, project, prompt_file, prompt_text if use_stdin else None
        )
        output = _ANSI.sub("", output)
        trace.append(
            {
                "kind": "output",
                "exit_code": exit_code,
                "timed_out": timed_out,
                "seconds": round(seconds, 3),
                "output": output,
            }
        )
        return exit_code, timed_out, output

    def _failure(self, reading: Reading, exit_code: int | None, timed_out: bool) -> str | None:
        """Why the agent's run proposes nothing (None: its changes are read)."""
        if timed_out:
            return (
                f"the agent command did not finish within {self.timeout_s:g}s ([agent] "
                "timeout); it was killed with its children"
            )
        if reading.problem:
            return reading.problem
        if exit_code != 0:
            last = reading.last
            return f"the agent command exited with code {exit_code}" + (f": {last}" if last else "")
        return None

    # --- the scratch copy ------------------------------------------------------------------

    def _git_env(self) -> dict[str, str]:
        env = {k: v for k, v in self._environ.items() if k not in _GIT_ENV_DROP}
        env.update(
            GIT_AUTHOR_NAME="ratchet",
            GIT_AUTHOR_EMAIL="ratchet@localhost",
            GIT_COMMITTER_NAME="ratchet",
            GIT_COMMITTER_EMAIL="ratchet@localhost",
        )
        return env

    def _git(self, cwd: Path, *args: str) -> str:
        failure = f"git {args[0]} failed in the agent's scratch copy"
        return self._git_bytes(cwd, args, failure).decode("utf-8", "replace")

    def _git_bytes(self, cwd: Path, args: tuple[str, ...], failure: str) -> bytes:
        return git_output(cwd, args, self._git_env(), failure)

    def _prepare(self, project: Path, context: ProposalContext, text: str) -> str:
        """Fills the scratch copy and commits it; returns that commit. The files come from the
        loop's current best (its commit), never from the user's working tree."""
        files = ProjectFiles(self.root, self.locked, self.hidden_files, self._git_env())
        files.copy_into(project, context.base_commit, context.editable_path)
        editable = project / context.editable_path
        editable.parent.mkdir(parents=True, exist_ok=True)
        editable.write_text(text, encoding="utf-8")
        if context.program:
            program = project / self.program
            program.parent.mkdir(parents=True, exist_ok=True)
            program.write_text(context.program, encoding="utf-8")
        self._git(project, "init", "-q")
        exclude = project / ".git" / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text("\n".join([f"/{self.description_file}", *_EXCLUDED]) + "\n")
        self._git(project, "add", "-A", "-f", ".")
        self._git(project, "commit", "-q", "--allow-empty", "-m", "ratchet: the current best")
        return self._git(project, "rev-parse", "HEAD").strip()

    def _changes(self, project: Path, base: str) -> dict[str, str]:
        """Every file that differs from the scratch copy's first commit (committed by the
        agent or not), or that the agent added: path → new text ("" when deleted)."""
        changed = self._git(project, "diff", "--name-only", "--no-renames", "-z", base)
        added = self._git(project, "ls-files", "--others", "--exclude-standard", "-z")
        edits: dict[str, str] = {}
        for relative in dict.fromkeys([*changed.split("\0"), *added.split("\0")]):
            if not relative:
                continue
            target = project / relative
            if target.is_symlink() or not target.is_file():
                edits[relative] = ""
                continue
            edits[relative] = target.read_bytes().decode("utf-8", errors="replace")
        return edits

    def _description(self, project: Path) -> str:
        path = project / self.description_file
        if not path.is_file():
            return ""
        with contextlib.suppress(OSError):
            return _last_line(path.read_text(encoding="utf-8", errors="replace"), first=True)
        return ""

    # --- running the agent -----------------------------------------------------------------

    async def _execute(
        self, argv: list[str], cwd: Path, prompt_file: Path, stdin_text: str | None
    ) -> tuple[int | None, bool, str, float]:
        """(exit code, timed out, output, seconds). The whole process tree is killed at the
        time limit, and whatever the agent left running is killed when it exits."""
        token = uuid.uuid4().hex
        variables = {
            TOKEN_VARIABLE: token,
            "RATCHET_PROMPT_FILE": str(prompt_file),
            "RATCHET_DESCRIPTION_FILE": str(cwd / self.description_file),
            "RATCHET_EDITABLE": self.editable,
            **({LOOP_VARIABLE: self.loop_id} if self.loop_id else {}),
        }
        env = {k: v for k, v in self._environ.items() if k not in _GIT_ENV_DROP}
        env.update(variables)
        if self.sandbox is not None:
            try:  # its processes keep the token: kill_tree finds them in the sandbox too
                argv, env = self.sandbox.wrap(argv, cwd, prompt_file, self._environ, variables)
            except RatchetError as error:
                return 126, False, str(error), 0.0
        started = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            return 127, False, f"cannot start {argv[0]!r}: {error}", 0.0
        timed_out, text = await self._follow(process, token, stdin_text)
        return process.returncode, timed_out, text, time.monotonic() - started

    async def _follow(
        self, process: asyncio.subprocess.Process, token: str, stdin_text: str | None
    ) -> tuple[bool, str]:
        """Feeds the agent its stdin and keeps its output's last OUTPUT_KEEP_BYTES until it
        exits or its time is up; then its process tree goes. (timed out, output)"""
        output = bytearray()

        async def read() -> None:
            assert process.stdout is not None
            while chunk := await process.stdout.read(65536):
                output.extend(chunk)
                if len(output) > 2 * OUTPUT_KEEP_BYTES:
                    del output[: len(output) - OUTPUT_KEEP_BYTES]

        async def feed() -> None:
            if process.stdin is None or stdin_text is None:
                return
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                process.stdin.write(stdin_text.encode("utf-8"))
                await process.stdin.drain()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                process.stdin.close()

        reader = asyncio.create_task(read())
        feeder = asyncio.create_task(feed())
        timed_out = False
        try:
            await asyncio.wait_for(process.wait(), timeout=self.timeout_s)
        except TimeoutError:
            timed_out = True
        finally:
            # The agent, or what it left behind (a daemon holding stdout), goes now.
            await asyncio.to_thread(kill_tree, process.pid, token, self.kill_grace_s)
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            for task in (feeder, reader):
                try:
                    await asyncio.wait_for(task, timeout=2.0)
                except (TimeoutError, asyncio.CancelledError):
                    task.cancel()
        return timed_out, bytes(output[-OUTPUT_KEEP_BYTES:]).decode("utf-8", errors="replace")


def scratch_prefix(loop_id: str) -> str:
    """The name a scratch copy starts with: the loop's id in it, so that the next start of
    the loop finds what a killed one left behind."""
    return f"ratchet-agent-{loop_id}-" if loop_id else "ratchet-agent-"


def remove_agent_scratch(loop_id: str) -> int:
    """Deletes the scratch copies a killed loop's agents left (the caller holds the loop's
    lock, so none is in use). Returns how many there were."""
    stale = list(Path(tempfile.gettempdir()).glob(scratch_prefix(loop_id) + "*"))
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    return len(stale)


def hidden_files(config: Config) -> tuple[str, ...]:
    """What the agent never reads: the evaluator's files, and holdout data if declared."""
    return (*config.metric.eval_only, *config.metric.holdout_only)


def _last_line(text: str, first: bool = False) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    return (lines[0] if first else lines[-1])[:DESCRIPTION_CHARS]
