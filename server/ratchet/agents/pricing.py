"""What the Messages API's tokens cost: the price table by model family, and a request's
or a proposal's usage."""

from __future__ import annotations

from dataclasses import dataclass

# --- price table ---------------------------------------------------------------------------

# (name fragment, USD per million input tokens, per million output tokens); first match wins.
PRICES: tuple[tuple[str, float, float], ...] = (
    ("opus-4-1", 15.0, 75.0),
    ("opus-4-0", 15.0, 75.0),
    ("opus-4-2025", 15.0, 75.0),
    ("3-opus", 15.0, 75.0),
    ("opus", 5.0, 25.0),  # opus 4.5 and later
    ("3-5-haiku", 0.8, 4.0),
    ("3-haiku", 0.25, 1.25),
    ("haiku", 1.0, 5.0),  # haiku 4.5 and later
    ("sonnet", 3.0, 15.0),
)
DEFAULT_PRICE = (5.0, 25.0)  # an unknown family: the opus tier, so a cost cap errs early
CACHE_WRITE_FACTOR = 1.25
CACHE_READ_FACTOR = 0.1


def price_per_mtok(model: str) -> tuple[float, float]:
    name = model.lower()
    for fragment, price_in, price_out in PRICES:
        if fragment in name:
            return price_in, price_out
    return DEFAULT_PRICE


@dataclass
class Usage:
    input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.output_tokens += other.output_tokens

    @property
    def all_input(self) -> int:
        return self.input_tokens + self.cache_write_tokens + self.cache_read_tokens

    def cost_usd(self, model: str) -> float:
        price_in, price_out = price_per_mtok(model)
        dollars = (
            self.input_tokens * price_in
            + self.cache_write_tokens * price_in * CACHE_WRITE_FACTOR
            + self.cache_read_tokens * price_in * CACHE_READ_FACTOR
            + self.output_tokens * price_out
        )
        return dollars / 1_000_000

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write_tokens,
            "cache_read_input_tokens": self.cache_read_tokens,
            "output_tokens": self.output_tokens,
        }
