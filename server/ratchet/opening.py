"""Opening a loop: its branch and record, the rules pinned to it, recovery after a kill, and
the queued work it had promised.

The ledger is the truth: it is written first. After a kill, unfinished experiments become
`interrupted` (and are run again), and the refs are put where the ledger says with one read
and one transaction. A branch that agrees with no point the ledger could have left it at was
moved by something else, and is refused with the command that puts it back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import results_tsv
from .agents.command import remove_agent_scratch
from .baseline import Baselines
from .config import LLM_KINDS, Config
from .errors import RatchetError
from .experiment import Experiment, Pending, Proposal, Status, move
from .history import History
from .lockfile import taken_at
from .preflight import check_command
from .runners.processes import LOOP_VARIABLE, kill_orphans
from .scheduler import PERSON, WorkItem
from .slots import Slots
from .workspace import RATCHET_DIR, Workspace

MAX_ATTEMPTS = 3  # runs of one agent proposal interrupted in a row before it is dropped
_SHELL_SYNTAX = (";", "&", "|", "$", "`", "(", "<", ">", "\n")


class Opening:
    def __init__(
        self,
        *,
        config: Config,
        history: History,
        workspace: Workspace,
        slots: Slots,
        baselines: Baselines,
        loop_id: str,
        data: Path,
        say: Callable[[str], None],
        new_rules: bool,
        carry_user_change: bool,
    ) -> None:
        self.config = config
        self.history = history
        self.ledger = history.ledger
        self.tag = history.tag
        self.workspace = workspace
        self.slots = slots
        self.baselines = baselines
        self.loop_id = loop_id
        self.data = data  # this loop's folder: the close mark
        self.say = say
        self.new_rules = new_rules
        self.carry_user_change = carry_user_change
        self._reruns: list[WorkItem] = []
        self._carried: Pending | None = None
        self._rebaseline_why: str | None = None

    # --- the rules a loop is judged by -------------------------------------------------------

    def rules(self, config: Config, commit: str) -> dict[str, Any]:
        """What a result's verdict depends on, pinned to the loop when it starts."""
        workspace = self.workspace
        return {
            "metric": config.metric.name,
            "goal": config.metric.goal,
            "pattern": config.metric.pattern,
            "eval": config.metric.eval,
            "evaluate": config.metric.evaluate,
            "evaluate_python": config.metric.python,
            "metric_file": config.metric.file,
            "metric_key": config.metric.key,
            "budget_s": config.loop.budget_s,
            "grace_s": config.loop.grace,
            "command": config.loop.command,
            "artefacts": sorted(config.metric.artefacts),
            "eval_only": sorted(config.metric.eval_only),
            "holdout_only": sorted(config.metric.holdout_only),
            "guards": sorted(str(guard) for guard in config.metric.guards),
            "sandbox": config.sandbox.kind,
            "network": config.sandbox.network,
            "locked": {path: workspace.blob(commit, path) for path in config.loop.locked},
        }

    def rules_changed(self, config: Config) -> str:
        """Which pinned rules this configuration would change, in words; "" if none."""
        loop = self.ledger.loop(self.tag)
        if loop is None or not loop.get("rules"):
            return ""
        pinned = dict(loop["rules"])
        wanted = self.rules(config, loop["start_commit"])
        # The locked files' content is checked against the user's branch at open; here, which.
        pinned["locked"] = sorted(pinned.get("locked") or [])
        wanted["locked"] = sorted(wanted["locked"])
        # A rule this loop's record predates is pinned as it is now (see _check_rules).
        changed = [name for name in wanted if name in pinned and pinned[name] != wanted[name]]
        if not changed:
            return ""
        said = ", ".join(f"{n} ({_short(pinned.get(n))} → {_short(wanted[n])})" for n in changed)
        return (
            f"ratchet.toml changes the rules loop {self.tag} is judged by: {said}. "
            "Results under other rules cannot be compared. Start a new loop "
            "(`ratchet run --tag NEW`), or measure the baseline again under the new rules "
            "(`ratchet run --new-rules`); nothing changes in a loop while it runs."
        )

    # --- the branch and the record -----------------------------------------------------------

    def open_branch(self) -> None:
        workspace, ledger, tag = self.workspace, self.ledger, self.tag
        config = self.config
        loop = ledger.loop(tag)
        close_mark = self._take_close_mark()  # taken whatever happens: it says this moment
        if close_mark is None:  # no clean close: a kill may have left git's locks behind
            self._clear_stale_locks()
        if loop is None:
            if workspace.branch_exists():
                raise RatchetError(
                    f"the branch {workspace.branch} exists but this project's ledger does "
                    "not know it; choose another tag (`ratchet run --tag NAME`) or delete that "
                    f"branch (`git branch -D {workspace.branch}`)"
                )
            workspace.check_ready([config.loop.editable, *config.loop.locked])
            self._preflight(config)
            start = workspace.create_branch()
            ledger.add_loop(
                tag, start, config.metric.name, config.metric.goal, self.rules(config, start)
            )
            self.history.load()
            # Its header from the start (replacing a forgotten loop's of the same tag).
            ledger.write_results(tag, config.metric.name, [])
        else:
            workspace.check_ready([])  # a repository with commits, not on our branch
            self.history.load()
            self._check_rules(loop)
            # We hold the lock: whatever a killed loop's experiments left running is orphaned.
            kill_orphans(LOOP_VARIABLE, self.loop_id)
            remove_agent_scratch(self.loop_id)
            self._recover(loop, close_mark)
            self._check_user_branch(loop)
        results_tsv.link_results(ledger.folder, tag)
        workspace.remove_worktrees()
        self.history.start_at(workspace.branch_tip() or "")
        program = config.root / config.loop.program
        if config.agent.kind in LLM_KINDS and not program.is_file():
            self.say(
                f"{config.loop.program}, the agent's instructions, does not exist: the agent "
                "proposes without them; write it (`ratchet init` writes one) or point "
                "`program` under [loop] at your file"
            )

    def _clear_stale_locks(self) -> None:
        """Called holding the loop lock: no git process of a loop writes the loop's refs."""
        held_since = taken_at(self.config.root / RATCHET_DIR)
        removed = self.workspace.clear_stale_locks(held_since)
        if removed:
            self.say(
                f"removed {', '.join(removed)}: left by a git process killed with the loop, "
                "it would have refused every later write of that ref"
            )

    @staticmethod
    def _preflight(config: Config) -> None:
        """A command that cannot start is said before the loop, its branch and refs exist (a
        remote host's programs cannot be checked from here)."""
        command = config.loop.command
        if config.runner.kind != "local" or any(c in command for c in _SHELL_SYNTAX):
            return  # a compound shell line (`cd x && ...`) is the shell's to start
        for check in check_command(config):
            if not check.ok:
                raise RatchetError(check.message + "; nothing was started")

    def _check_rules(self, loop: dict[str, Any]) -> None:
        if not loop.get("rules"):  # a loop from before rules were pinned: pinned now
            self.ledger.set_loop(self.tag, rules=self.rules(self.config, loop["start_commit"]))
            return
        problem = self.rules_changed(self.config)
        if not problem:
            rules = self.rules(self.config, loop["start_commit"])
            if set(rules) - set(loop["rules"]):  # rules added since this loop began
                self.ledger.set_loop(self.tag, rules={**rules, **loop["rules"]})
            return
        if not self.new_rules:
            raise RatchetError(problem)
        self.ledger.set_loop(self.tag, rules=self.rules(self.config, loop["start_commit"]))
        self._rebaseline_why = "the loop's rules changed (--new-rules)"

    def _recover(self, loop: dict[str, Any], close_mark: dict[str, Any] | None) -> None:
        """Unfinished experiments become `interrupted`; refs and branch agree with the ledger."""
        history, workspace = self.history, self.workspace
        recovered = 0
        for exp in [e for e in history.experiments if not e.status.is_final]:
            full = history.full(exp.id) or exp
            move(full, Status.INTERRUPTED, "interrupted: the loop stopped while it ran")
            full.finished_at = full.finished_at or time.time()
            history.save(full)
            recovered += 1
        if recovered or close_mark != self._close_mark(loop):
            expected = {e.id: e.commit for e in history.experiments if e.commit}
            workspace.sync_experiment_refs(expected)
        self._check_branch(loop)
        results = results_tsv.results_of(self.ledger.folder, self.tag)
        # A kill between the ledger's write and results.tsv's append leaves a row missing.
        if recovered or _rows_in(results) != history.in_results:
            self.ledger.write_results(self.tag, self.config.metric.name, history.experiments)
        self._reruns = self._interrupted_reruns()

    # A clean close leaves a mark saying the refs agree with the ledger, so the next open
    # need not read every experiment's ref (0.3 s at 100,000). A crash leaves none, and the
    # mark is taken at open, so it never outlives the loop that wrote it.

    def mark_closed(self) -> None:
        loop = self.ledger.loop(self.tag)
        if loop is not None:
            self._close_mark_path.parent.mkdir(parents=True, exist_ok=True)
            self._close_mark_path.write_text(json.dumps(self._close_mark(loop)), "utf-8")

    def _take_close_mark(self) -> dict[str, Any] | None:
        path = self._close_mark_path
        try:
            mark = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return None
        path.unlink(missing_ok=True)
        return mark if isinstance(mark, dict) else None

    def _close_mark(self, loop: dict[str, Any]) -> dict[str, Any]:
        history = self.history
        return {
            "start": loop["start_commit"],
            "tip": self.workspace.branch_tip(),
            "experiments": len(history.experiments),
            "next": history.next_id(),
        }

    @property
    def _close_mark_path(self) -> Path:
        return self.data / "closed.json"

    def _check_branch(self, loop: dict[str, Any]) -> None:
        """The branch is where the ledger's last keep left it, or one keep behind (a kill
        between the ledger's write and the branch's move); anything else is refused."""
        workspace, best = self.workspace, self.history.best
        expected = best.commit if best and best.commit else loop["start_commit"]
        allowed = {expected, best.base_commit if best else None, None}
        tip = workspace.branch_tip()
        if tip == expected:
            return
        if tip is not None and tip not in allowed:
            raise RatchetError(
                f"the loop's branch {workspace.branch} points at {tip[:12]}, where no experiment "
                f"of the ledger left it (it should be at {expected[:12]}): something other than "
                "Ratchet moved it, and it is not trusted. Put it back with "
                f"`git update-ref {workspace.branch_ref} {expected}` and run again."
            )
        workspace.set_branch(expected)

    def _check_user_branch(self, loop: dict[str, Any]) -> None:
        """Never run old code silently: the user's branch changed the editable or a locked
        file since the loop began (and not to the loop's own best)."""
        workspace, config = self.workspace, self.config
        head = workspace.head()
        start = loop["start_commit"]
        if head is None or head == start:
            return
        tip = workspace.branch_tip() or start
        moved = [
            path
            for path in (config.loop.editable, *config.loop.locked)
            if workspace.blob(head, path)
            not in (workspace.blob(start, path), workspace.blob(tip, path))
        ]
        if not moved:
            return
        locked_moved = [p for p in moved if p != config.loop.editable]
        if locked_moved or not self.carry_user_change:
            ways = "start a new loop from it (`ratchet run --tag NEW`)" + (
                ""
                if locked_moved
                else ", or carry your change into this loop as a person's experiment, "
                "measured like any other (`ratchet run --carry`)"
            )
            raise RatchetError(
                f"your branch changed {', '.join(moved)} since loop {self.tag} began at "
                f"{start[:12]}; the loop runs its own copy, so your change would never run. "
                f"To go on: {ways}."
            )
        text = workspace.read(head, config.loop.editable)
        base_text = workspace.read(tip, config.loop.editable)
        proposal = Proposal(
            edits={config.loop.editable: text},
            description=f"your change from {head[:12]}",
            source="human",
        )
        self._carried = Pending(proposal, tip, base_text)

    def _interrupted_reruns(self) -> list[WorkItem]:
        """Experiments interrupted mid-run (a kill, Ctrl-C, a stop) are measured again first
        thing, and again if that re-run is interrupted too: a person's edit until it is
        measured, the agent's up to MAX_ATTEMPTS times, then dropped with a word."""
        history, editable = self.history, self.config.loop.editable
        by_id = {e.id: e for e in history.experiments}  # once per start, not per experiment
        rerun = {e.rerun_of for e in history.experiments if e.rerun_of is not None}
        items = []
        for exp in history.experiments:
            if (
                exp.status is not Status.INTERRUPTED
                or exp.commit is None
                or exp.id in rerun
                or exp.source in ("baseline", "remeasure")
            ):
                continue
            attempts = _attempts(exp, by_id)
            if exp.source == "agent" and attempts >= MAX_ATTEMPTS:
                self.say(
                    f"exp {exp.id} ({exp.description}) was interrupted {attempts} times: "
                    "not run again (`ratchet show` has it; submit it again to measure it)"
                )
                continue
            text = self.workspace.read(exp.commit, editable)
            base_text = self.workspace.read(exp.base_commit, editable)
            proposal = Proposal(
                edits={editable: text},
                source=exp.source,
                rerun_of=exp.id,
                description=exp.description,
            )
            items.append(WorkItem(Pending(proposal, exp.base_commit, base_text), PERSON, False))
        return items

    # --- queued work -------------------------------------------------------------------------

    def restore_queue(self) -> list[WorkItem]:
        """The work the loop had promised when it stopped: the ledger's queue, the re-runs of
        interrupted experiments, and the user's change when asked to carry it."""
        items = list(self._reruns)
        editable = self.config.loop.editable
        for row, payload in self.ledger.queued(self.tag):
            base_text = self.workspace.read(payload["base_commit"], editable)
            proposal = Proposal(
                edits=payload["edits"],
                description=payload["description"],
                source=payload["source"],
                rerun_of=payload["rerun_of"],
            )
            pending = Pending(
                proposal, payload["base_commit"], base_text, hardware=payload["hardware"]
            )
            items.append(WorkItem(pending, payload["priority"], payload["counted"], row))
        if self._carried is not None:
            row = self.history.promise(self._carried, PERSON, True)
            items.append(WorkItem(self._carried, PERSON, True, row))
            self._carried = None
        self._reruns = []
        return items

    async def check_hardware(self) -> Pending | None:
        """The loop's reference hardware must be here for its results to compare; if no slot
        has it, the baseline is measured again on the hardware present, rather than waiting:
        returns that baseline, to be queued first."""
        if self._rebaseline_why:
            why, self._rebaseline_why = self._rebaseline_why, None
            return await self.baselines.measure_again(why)
        baseline = self.history.baseline
        if not self.config.judge.same_hardware or baseline is None or not baseline.hardware:
            return None
        if not self.slots.present(baseline.hardware):
            there = baseline.hardware.get("gpu") or baseline.hardware.get("cpu")
            why = f"the baseline was measured on {there}, which no slot has"
            return await self.baselines.measure_again(why)
        return None

    def revert_pending(self, experiment: int) -> Pending:
        exp = self.ledger.get(self.tag, experiment)
        if exp is None:
            raise RatchetError(f"there is no experiment {experiment} in loop {self.tag}")
        if exp.status is not Status.KEPT or exp.source == "baseline" or exp.commit is None:
            raise RatchetError(
                f"experiment {experiment} is {exp.status}, not a kept change; "
                "only kept experiments can be reverted"
            )
        workspace, editable = self.workspace, self.config.loop.editable
        undone = workspace.carry(
            workspace.read(exp.commit, editable),
            workspace.read(workspace.parent(exp.commit), editable),
            self.history.tip,
            editable,
        )
        if undone is None:
            raise RatchetError(
                f"experiment {experiment} cannot be reverted cleanly: its change is no longer "
                "in the best, or later kept changes touch the same lines; revert those first"
            )
        merged, current = undone
        proposal = Proposal(
            edits={editable: merged},
            description=f"revert exp {experiment}: {exp.description}",
            source="revert",
        )
        return Pending(proposal, self.history.tip, current)


def _rows_in(results: Path) -> int | None:
    """results.tsv's rows (its header not counted); None when there is no such file."""
    try:
        with results.open("rb") as lines:
            return sum(1 for _ in lines) - 1
    except OSError:
        return None


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _attempts(exp: Experiment, by_id: dict[int, Experiment]) -> int:
    """How many times this edit has been started: itself and the re-runs it continues."""
    count = 1
    while exp.rerun_of is not None and (earlier := by_id.get(exp.rerun_of)) is not None:
        exp, count = earlier, count + 1
    return count
