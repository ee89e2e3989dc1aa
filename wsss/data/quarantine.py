"""Quarantine: files that could not be used, each with its reason, under an error budget."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


class ErrorBudgetExceeded(RuntimeError):
    """More files failed than the error budget allows; the message lists every one."""

    def __init__(self, quarantine: Quarantine, total: int, allowed: int):
        lines = [f"  {entry['image_id']}: {entry['reason']}" for entry in quarantine.entries]
        super().__init__(
            f"{len(quarantine)} of {total} images failed, over the error budget of {allowed}:\n"
            + "\n".join(lines)
        )
        self.quarantine = quarantine


@dataclass
class Quarantine:
    """Image ids set aside with the reason; never silently dropped."""

    entries: list[dict[str, str]] = field(default_factory=list)

    def add(self, image_id: str, reason: str) -> None:
        self.entries.append({"image_id": image_id, "reason": reason})

    def extend(self, other: Quarantine) -> None:
        self.entries.extend(other.entries)

    def ids(self) -> set[str]:
        return {entry["image_id"] for entry in self.entries}

    def __len__(self) -> int:
        return len(self.entries)

    def allowed(self, total: int, budget: float) -> int:
        """How many failures a budget (a fraction of ``total``) tolerates."""
        return math.floor(budget * total + 1e-9)

    def check_budget(self, total: int, budget: float) -> None:
        """Raise ErrorBudgetExceeded when more than ``budget * total`` images failed."""
        allowed = self.allowed(total, budget)
        if len(self) > allowed:
            raise ErrorBudgetExceeded(self, total, allowed)
