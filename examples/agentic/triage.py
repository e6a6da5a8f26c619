"""A support-ticket triage agent. EDITABLE: the loop improves this file.

This is the "task agent" of the meta-agent / task-agent pattern: its rules, weights and reply
templates are what the proposing agent edits, and the locked `evaluate.py` scores it on a
labelled set of tickets and writes why each failed case failed to `failures.txt`. It is
deterministic and offline (no model behind it), so every score is exactly reproducible.

    python triage.py "I was charged twice"      # triage one ticket by hand
    python triage.py --selftest                 # the loop's `command`: a quick sanity check
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

LABELS = ("billing", "bug", "account", "feature", "other")

# ---------------------------------------------------------------------------------------------
# Weights and thresholds (plain module-level numbers: the offline agent perturbs these)

KEYWORD_WEIGHT = 1.0  # one matched keyword
PHRASE_WEIGHT = 1.5  # one matched phrase of several words
BILLING_WEIGHT = 1.0  # a label's weights multiply its matches
BUG_WEIGHT = 1.0
ACCOUNT_WEIGHT = 1.3
FEATURE_WEIGHT = 0.6
MIN_SCORE = 1.05  # below this the ticket is "other" (a human reads it)
TIE_MARGIN = 0.25  # labels this close to the best are decided by PRIORITY

# ---------------------------------------------------------------------------------------------
# Rules: what each label's tickets say

RULES: dict[str, tuple[str, ...]] = {
    "billing": (
        "charged",
        "charge",
        "refund",
        "invoice",
        "payment",
        "billed",
        "receipt",
        "subscription fee",
        "credit card",
        "price",
        "vat",
    ),
    "bug": (
        "crash",
        "crashes",
        "error",
        "broken",
        "fails",
        "freezes",
        "exception",
        "bug",
        "not working",
        "stopped working",
    ),
    "account": (
        "password",
        "log in",
        "login",
        "locked",
        "account",
        "email address",
        "username",
        "two-factor",
        "signed in",
        "sign in",
        "delete my account",
    ),
    "feature": (
        "would be nice",
        "please add",
        "suggestion",
        "could you add",
        "i wish",
        "feature request",
        "support for",
        "would love",
        "plans to support",
    ),
}
PRIORITY = ("bug", "billing", "account", "feature")  # who wins a near tie

# ---------------------------------------------------------------------------------------------
# The reply: the template the agent fills for the human who sends it

REPLY_TEMPLATES = {
    "billing": "Thanks for reaching out about billing. Our billing team will check {topic}.",
    "bug": "Sorry about the trouble. We have filed a bug report about {topic}.",
    "account": "For your security, please confirm the email on the account about {topic}.",
    "feature": "Thank you for the suggestion. We have added {topic} to our feature list.",
    "other": "Thanks for your message. A member of our team will reply about {topic}.",
}


@dataclass
class Decision:
    label: str
    scores: dict[str, float]
    matches: dict[str, list[str]] = field(default_factory=dict)
    reply: str = ""
    why: str = ""


def _weights() -> dict[str, float]:
    return {
        "billing": BILLING_WEIGHT,
        "bug": BUG_WEIGHT,
        "account": ACCOUNT_WEIGHT,
        "feature": FEATURE_WEIGHT,
    }


def _normalise(ticket: str) -> str:
    return " ".join(re.findall(r"[a-z0-9'-]+", ticket.lower()))


def _found(text: str, rule: str) -> bool:
    return re.search(rf"\b{re.escape(rule)}\b", text) is not None


def triage(ticket: str) -> Decision:
    """The label of one ticket, with the scores and matched rules that decided it."""
    text = _normalise(ticket)
    weights = _weights()
    scores: dict[str, float] = {}
    matches: dict[str, list[str]] = {}
    for label, rules in RULES.items():
        found = [rule for rule in rules if _found(text, rule)]
        matches[label] = found
        base = sum(PHRASE_WEIGHT if " " in rule else KEYWORD_WEIGHT for rule in found)
        scores[label] = round(base * weights[label], 4)
    best = max(scores.values())
    if best < MIN_SCORE:
        label, why = "other", f"best score {best:g} < MIN_SCORE {MIN_SCORE:g}"
    else:
        close = [name for name in PRIORITY if scores[name] >= best - TIE_MARGIN]
        label = close[0]
        why = (
            f"highest score {scores[label]:g}"
            if len(close) == 1
            else (f"near tie of {', '.join(close)} (within TIE_MARGIN {TIE_MARGIN:g}): PRIORITY")
        )
    topic = " ".join(matches.get(label, [])[:2]) or "your request"
    return Decision(label, scores, matches, REPLY_TEMPLATES[label].format(topic=topic), why)


def _selftest() -> int:
    decision = triage("The app crashes when I open it")
    print(f"selftest: {decision.label} ({decision.why})")
    return 0 if decision.label in LABELS else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--selftest"]:
        sys.exit(_selftest())
    result = triage(" ".join(sys.argv[1:]) or "hello")
    print(f"{result.label}: {result.why}\nreply: {result.reply}")
