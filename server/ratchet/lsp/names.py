"""Every name the editor contract spells: commands (workspace/executeCommand), and the
notifications and requests of Ratchet's own. A contract: add names, never rename one."""

from __future__ import annotations

START = "ratchet.start"
STOP = "ratchet.stop"
PAUSE = "ratchet.pause"
RESUME = "ratchet.resume"
PROPOSE_ONCE = "ratchet.proposeOnce"
ACCEPT = "ratchet.accept"
REJECT = "ratchet.reject"
APPLY = "ratchet.apply"
REVERT = "ratchet.revert"
RUN_BUFFER = "ratchet.runBuffer"
NOTE = "ratchet.note"
EXPERIMENTS = "ratchet.experiments"
EXPERIMENT = "ratchet.experiment"
STATUS = "ratchet.status"
STOP_EXPERIMENT = "ratchet.stopExperiment"
OPEN_DIFF = "ratchet.openDiff"
DIFF_TEXT = "ratchet.diffText"
REPORT = "ratchet.report"  # the loop's HTML report into .ratchet/report.html, opened
FINALIZE = "ratchet.finalize"  # the keeps as a review branch: {squash?, exclude?, patch?}

# Handled when a client sends them, but not advertised: VS Code's language client registers a
# palette command for every advertised one, and these take arguments only a client has.
UNADVERTISED = frozenset({OPEN_DIFF, DIFF_TEXT, EXPERIMENT})

STATUS_NOTIFICATION = "ratchet/status"
EXPERIMENT_NOTIFICATION = "ratchet/experiment"  # one light row, each time one changes
AGENT_ACTIVITY_NOTIFICATION = "ratchet/agentActivity"
DIFF_TEXT_REQUEST = "ratchet/diffText"  # {uri: "ratchet:/exp/14.diff"} -> {text}

DIFF_SCHEME = "ratchet"
