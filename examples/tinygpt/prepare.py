"""Data and evaluation for the tinygpt example. LOCKED: the loop never changes this file.

The corpus is generated here, deterministically, from a fixed seed: short stories in a small
made-up English, with structure at several scales so that a better model earns a lower score:

- spelling and word frequencies (an n-gram model gets these);
- subject-verb agreement and fixed phrases (a few characters of context);
- the names of a story's two characters, drawn from a few hundred, that come back in later
  sentences (only a model that attends across the story can copy them);
- sums with carries ("had 27 shells and found 15 more, so now had 42 shells"), which need some
  arithmetic inside the network.

Nothing is downloaded and nothing is written to disk. The text is ASCII, so one character is
one byte and bits per character are bits per byte.

What train.py uses:
    VOCAB_SIZE, encode(), decode()
    get_batch(split, batch_size, block_size, generator, device) -> (x, y)
    evaluate_bpb(model, block_size, device) -> float   (the metric, val_bpb; lower is better)
    TIME_BUDGET                                         (seconds, from RATCHET_TIME_BUDGET)
"""

from __future__ import annotations

import math
import os
import random

import torch
import torch.nn.functional as F

DATA_SEED = 1337
TRAIN_CHARS = 1_000_000
VAL_CHARS = 40_000
EVAL_BATCH_TOKENS = 8192  # tokens per forward pass during evaluation (memory, not the result)

TIME_BUDGET = float(os.environ.get("RATCHET_TIME_BUDGET") or 60.0)

# ---------------------------------------------------------------------------------------------
# The corpus

# fmt: off
_NOUNS = [
    ("cat", "cats"), ("dog", "dogs"), ("bird", "birds"), ("fox", "foxes"), ("frog", "frogs"),
    ("boat", "boats"), ("tree", "trees"), ("stone", "stones"), ("lamp", "lamps"),
    ("box", "boxes"), ("key", "keys"), ("cake", "cakes"), ("kite", "kites"), ("ball", "balls"),
    ("horse", "horses"), ("mouse", "mice"), ("child", "children"), ("baker", "bakers"),
    ("king", "kings"), ("queen", "queens"), ("star", "stars"), ("river", "rivers"),
    ("shell", "shells"), ("apple", "apples"), ("book", "books"), ("clock", "clocks"),
    ("owl", "owls"), ("bell", "bells"), ("wolf", "wolves"), ("leaf", "leaves"),
]
_COUNTABLE = [
    "apples", "shells", "coins", "stones", "cakes", "books", "feathers", "marbles", "acorns",
    "buttons", "pebbles", "flowers",
]
_VERBS = [  # (singular present, plural present, past)
    ("runs", "run", "ran"), ("sings", "sing", "sang"), ("sleeps", "sleep", "slept"),
    ("jumps", "jump", "jumped"), ("waits", "wait", "waited"), ("hides", "hide", "hid"),
    ("swims", "swim", "swam"), ("shines", "shine", "shone"), ("falls", "fall", "fell"),
    ("dances", "dance", "danced"), ("laughs", "laugh", "laughed"), ("rests", "rest", "rested"),
]
_TRANSITIVE = [  # (present singular, past)
    ("finds", "found"), ("sees", "saw"), ("holds", "held"), ("paints", "painted"),
    ("carries", "carried"), ("follows", "followed"), ("builds", "built"), ("hears", "heard"),
    ("loses", "lost"), ("keeps", "kept"),
]
_ADJECTIVES = [
    "small", "big", "red", "blue", "green", "old", "new", "quiet", "loud", "bright", "dark",
    "happy", "sleepy", "brave", "tiny", "golden", "silver", "strange", "warm", "cold",
]
_PLACES = [
    "market", "forest", "river", "garden", "castle", "harbor", "village", "meadow", "library",
    "bakery", "mountain", "beach", "bridge", "tower", "farm", "school",
]
_ADVERBS = ["slowly", "quickly", "softly", "happily", "quietly", "again", "together", "carefully"]
_TIMES = ["One morning", "One day", "Long ago", "At dawn", "That evening", "Last summer", "Once"]
_FEELINGS = ["glad", "tired", "surprised", "proud", "hungry", "sad", "curious", "calm"]
_SAYINGS = [
    "Look at that", "We should go home", "I am not afraid", "What a day", "Let us count them",
    "Wait for me", "It is getting late", "I can hear the bells", "Come and see",
]
_ONSETS = ["b", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "st", "tr", "sh", "ch", "gl"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "o"]
_CODAS = ["", "", "n", "l", "r", "s", "m", "th", "x"]
# fmt: on


def _names(rng: random.Random, count: int) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        syllables = rng.choice([2, 2, 2, 3])
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
        names.add((word + rng.choice(_CODAS)).capitalize())
    return sorted(names)


def _sentence(rng: random.Random, a: str, b: str) -> str:
    kind = rng.random()
    if kind < 0.22:  # agreement: singular or plural subject
        singular, plural = rng.choice(_NOUNS)
        verb = rng.choice(_VERBS)
        adjective = rng.choice(_ADJECTIVES)
        adverb = rng.choice(_ADVERBS)
        if rng.random() < 0.5:
            return f"The {adjective} {singular} {verb[0]} {adverb}."
        return f"The {adjective} {plural} {verb[1]} {adverb}."
    if kind < 0.42:  # a sum with carries
        who = rng.choice((a, b))
        thing = rng.choice(_COUNTABLE)
        x, y = rng.randint(2, 59), rng.randint(2, 39)
        return f"{who} had {x} {thing} and found {y} more, so now {who} had {x + y} {thing}."
    if kind < 0.58:  # the characters act on things
        who, other = (a, b) if rng.random() < 0.5 else (b, a)
        verb = rng.choice(_TRANSITIVE)[1]
        noun = rng.choice(_NOUNS)[0]
        adjective = rng.choice(_ADJECTIVES)
        article = "an" if adjective[0] in "aeiou" else "a"
        return f"{who} {verb} {article} {adjective} {noun} and gave it to {other}."
    if kind < 0.72:  # speech
        who = rng.choice((a, b))
        return f'"{rng.choice(_SAYINGS)}, {b if who == a else a}," said {who}.'
    if kind < 0.84:  # feelings
        who = rng.choice((a, b))
        return f"{who} felt {rng.choice(_FEELINGS)}, and {rng.choice(_FEELINGS)} too."
    if kind < 0.92:  # counting up
        start = rng.randint(1, 20)
        steps = ", ".join(str(start + i) for i in range(rng.randint(3, 6)))
        return f"{rng.choice((a, b))} counted {steps}."
    verb = rng.choice(_VERBS)[2]
    return f"They {verb} by the {rng.choice(_PLACES)} {rng.choice(_ADVERBS)}."


def _story(rng: random.Random, names: list[str]) -> str:
    a, b = rng.sample(names, 2)
    opening = f"{rng.choice(_TIMES)}, {a} and {b} went to the {rng.choice(_PLACES)}."
    body = [_sentence(rng, a, b) for _ in range(rng.randint(3, 7))]
    closing = f"{a} and {b} went home {rng.choice(_ADVERBS)}."
    return " ".join([opening, *body, closing]) + "\n\n"


def _text(seed: int, chars: int, names: list[str]) -> str:
    rng = random.Random(seed)
    parts: list[str] = []
    total = 0
    while total < chars:
        story = _story(rng, names)
        parts.append(story)
        total += len(story)
    return "".join(parts)[:chars]


_NAMES = _names(random.Random(DATA_SEED), 400)
_TRAIN_TEXT = _text(DATA_SEED + 1, TRAIN_CHARS, _NAMES)
_VAL_TEXT = _text(DATA_SEED + 2, VAL_CHARS, _NAMES)  # same language, stories never seen in training

CHARS = sorted(set(_TRAIN_TEXT) | set(_VAL_TEXT))
VOCAB_SIZE = len(CHARS)
_STOI = {c: i for i, c in enumerate(CHARS)}


def encode(text: str) -> list[int]:
    return [_STOI[c] for c in text]


def decode(ids) -> str:
    return "".join(CHARS[int(i)] for i in ids)


_DATA = {
    "train": torch.tensor(encode(_TRAIN_TEXT), dtype=torch.long),
    "val": torch.tensor(encode(_VAL_TEXT), dtype=torch.long),
}


def get_batch(split: str, batch_size: int, block_size: int, generator=None, device="cpu"):
    """Random windows of the training text: x is block_size characters, y the next ones.

    Only the "train" split is for training; the validation text is the metric's.
    """
    if split != "train":
        raise ValueError("train.py trains on the 'train' split only")
    data = _DATA["train"]
    starts = torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator)
    offsets = starts.unsqueeze(1) + torch.arange(block_size + 1)
    window = data[offsets]
    return window[:, :-1].to(device), window[:, 1:].to(device)


# ---------------------------------------------------------------------------------------------
# The metric


@torch.no_grad()
def _check_causal(model, block_size: int, device) -> None:
    """The prediction at position t may depend only on characters 0..t."""
    data = _DATA["val"]
    length = min(block_size, 64, len(data))
    if length < 4:
        return
    x = data[:length].unsqueeze(0).to(device)
    cut = length // 2
    changed = x.clone()
    changed[0, cut:] = (changed[0, cut:] + 1) % VOCAB_SIZE
    before, after = model(x).float(), model(changed).float()
    if not torch.allclose(before[:, :cut], after[:, :cut], atol=1e-3, rtol=1e-3):
        raise RuntimeError("the model looks ahead: its predictions depend on later characters")


@torch.no_grad()
def evaluate_bpb(model, block_size: int, device="cpu") -> float:
    """Bits per byte of the model on the whole validation text. Lower is better.

    `model(idx)` takes a LongTensor (B, T) with T <= block_size and returns logits (B, T,
    VOCAB_SIZE). Every validation character after the first is predicted exactly once, from
    the characters before it in its window of block_size, so the score is comparable across
    models, block sizes and batch sizes. Deterministic for a given model.
    """
    was_training = model.training
    model.eval()
    try:
        block_size = max(1, int(block_size))
        _check_causal(model, block_size, device)
        data = _DATA["val"]
        inputs, targets = data[:-1], data[1:]
        n = len(targets)
        windows = n // block_size
        total_bits = 0.0
        rows_per_pass = max(1, EVAL_BATCH_TOKENS // block_size)
        for first in range(0, windows, rows_per_pass):
            last = min(windows, first + rows_per_pass)
            x = inputs[first * block_size : last * block_size].view(-1, block_size).to(device)
            y = targets[first * block_size : last * block_size].view(-1, block_size).to(device)
            total_bits += _nats(model, x, y)
        tail = n - windows * block_size
        if tail:
            x = inputs[windows * block_size :].unsqueeze(0).to(device)
            y = targets[windows * block_size :].unsqueeze(0).to(device)
            total_bits += _nats(model, x, y)
        return total_bits / math.log(2) / n
    finally:
        model.train(was_training)


def _nats(model, x, y) -> float:
    logits = model(x).double()
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum"
    ).item()


if __name__ == "__main__":
    print(f"vocab: {VOCAB_SIZE} characters {''.join(CHARS)!r}")
    print(f"train: {len(_TRAIN_TEXT):,} characters, val: {len(_VAL_TEXT):,} characters")
    print(_TRAIN_TEXT[:1200])
