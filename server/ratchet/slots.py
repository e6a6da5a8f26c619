"""The slots experiments run on, and the hardware each has been seen to have."""

from __future__ import annotations

from typing import Any

from .hardware import same_hardware
from .runners.base import Runner, Slot


class Slots:
    def __init__(self) -> None:
        self.all: list[Slot] = []
        self.hardware: dict[str, dict[str, Any]] = {}  # what each slot runs on, once known

    async def open(self, runner: Runner) -> None:
        self.all = await runner.open()
        known = getattr(runner, "hardware_of", None)
        self.hardware = {
            s.name: hw for s in self.all if callable(known) and (hw := known(s)) is not None
        }

    def saw(self, slot: Slot, hardware: dict[str, Any]) -> None:
        """A run reported the hardware of its slot."""
        self.hardware[slot.name] = hardware

    def fits(self, wanted: dict[str, Any] | None, slot: Slot) -> bool:
        """Work pinned to the reference hardware goes only to a slot that has it (or whose
        hardware is not known before it runs: it is checked again after)."""
        seen = self.hardware.get(slot.name)
        return wanted is None or seen is None or same_hardware(seen, wanted)

    def present(self, wanted: dict[str, Any]) -> bool:
        """Some slot has this hardware, or may have it (some slot learns its own only when
        it runs)."""
        if len(self.hardware) < len(self.all):
            return True
        return any(same_hardware(hw, wanted) for hw in self.hardware.values())

    def any_hardware(self) -> dict[str, Any]:
        return next(iter(self.hardware.values()), {})
