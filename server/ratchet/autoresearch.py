"""An autoresearch program.md read for Ratchet: such a program tells the agent to run the
loop itself (branch, commit, run, grep, log results.tsv, reset), which is the harness's job
here. `ratchet init` keeps the person's research instructions and leaves those steps out,
in a file of its own beside the original (which stays as it was)."""

from __future__ import annotations

import re

HARNESS_PROGRAM = "program.ratchet.md"

_GIT_ITSELF = re.compile(r"\bgit\s+(commit|reset|checkout|switch|branch|stash|revert)\b", re.I)
_HEADING = re.compile(r"^(#{1,3})\s+(.*)$", re.M)
# Sections about running the loop, not about the research.
_HARNESS_HEADINGS = re.compile(
    r"setup|logging|results|experiment loop|the loop|loop forever|never stop|timeout|crash",
    re.I,
)


def runs_git_itself(program: str) -> bool:
    """Whether the program tells the agent to commit, reset or branch by itself."""
    return bool(_GIT_ITSELF.search(program))


def sections(text: str) -> list[tuple[str, str]]:
    """(heading line, body) pairs; the text before the first heading has heading ""."""
    marks = list(_HEADING.finditer(text))
    if not marks:
        return [("", text)]
    parts = [("", text[: marks[0].start()])]
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        end = following.start() if following else len(text)
        parts.append((mark.group(0), text[mark.end() : end]))
    return parts


def adapt_program(program: str, metric: str) -> str:
    kept: list[str] = []
    left_out: list[str] = []
    for heading, body in sections(program):
        title = heading.lstrip("#").strip()
        level = len(heading) - len(heading.lstrip("#"))
        if level == 1:
            continue  # the document's own title; ours replaces it
        if title and (_HARNESS_HEADINGS.search(title) or _GIT_ITSELF.search(body)):
            left_out.append(title)
            continue
        if not heading and (_GIT_ITSELF.search(body) or not body.strip()):
            continue
        kept.append(f"{heading}{body}".strip("\n"))
    left = ", ".join(f'"{title}"' for title in left_out) or "nothing"
    header = f"""# Program (for Ratchet)

Written by `ratchet init` from program.md, which stays as it was. Here Ratchet is the harness:
it makes the branch, commits, runs each experiment within its time budget, reads `{metric}`,
keeps or reverts, and writes results.tsv. You propose one edit to the editable file at a
time, with a one-line description. Do not run git, do not start the training yourself and
do not write results.tsv: those steps are done for you, and an edit outside the editable
file is refused.

Below are the research instructions of program.md as they were. Left out, because the
harness does them: {left}.
"""
    return header + "\n" + "\n\n".join(kept).rstrip() + "\n"
