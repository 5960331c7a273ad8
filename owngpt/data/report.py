"""`prepare`'s account of its work: counts per source and filter, skips with reasons, the sums, the progress display.

Every record read is counted once: records = documents in + conversations in + skipped, and for each kind
in = kept + removed (check_accounting). Sources and locations are named as owngpt/data/pii.scrubbed shows them (a
file name may hold a phone number).
"""

from __future__ import annotations

from typing import Any

from owngpt.console import console
from owngpt.data.clean import Cleaner
from owngpt.data.pii import scrubbed
from owngpt.data.records import Skip, reason_kind


def _counts() -> dict[str, int]:
    return {"in": 0, "kept": 0, "changed": 0, "removed": 0}


class Report:
    """Counts per source and per filter; skips with their file:line and reason; checks that everything adds up."""

    MAX_SKIPS_LISTED = 1000

    def __init__(self, cleaner: Cleaner) -> None:
        self.cleaner = cleaner
        self.sources: dict[str, dict[str, Any]] = {}
        self.skips: list[str] = []
        self.skip_reasons: dict[str, int] = {}
        self.converted: dict[str, int] = {}

    def source(self, name: str) -> dict[str, Any]:
        name = scrubbed(name)
        if name not in self.sources:
            self.sources[name] = {"records": 0, "skipped": 0, "documents": _counts(), "conversations": _counts(),
                                  "conversations_as_text": _counts()}
        return self.sources[name]

    def skip(self, rec: Skip) -> None:
        s = self.source(rec.source)
        s["records"] += 1
        s["skipped"] += 1
        reason = self.cleaner.shown(rec.reason)  # a reason may quote a value (a role, a field): scrubbed too
        if len(self.skips) < self.MAX_SKIPS_LISTED:  # readers' reasons may already start with file:line
            loc = scrubbed(rec.loc)
            where = loc.split(" [")[0]
            self.skips.append(reason if reason.startswith(where + ":") else f"{loc}: {reason}")
        key = reason_kind(reason)
        self.skip_reasons[key] = self.skip_reasons.get(key, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        total: dict[str, Any] = {"records": 0, "skipped": 0, "documents": _counts(), "conversations": _counts(),
                                 "conversations_as_text": _counts()}
        for s in self.sources.values():
            total["records"] += s["records"]
            total["skipped"] += s["skipped"]
            for kind in ("documents", "conversations", "conversations_as_text"):
                for k, v in s[kind].items():
                    total[kind][k] += v
        return {
            "sources": self.sources,
            "total": total,
            "filters": self.cleaner.report(),
            "skips": {"count": total["skipped"], "by_reason": dict(sorted(self.skip_reasons.items())),
                      "listed": self.skips, "listed_all": total["skipped"] <= len(self.skips)},
            "converted_encodings": self.converted,
        }


def skip_lines(skips: dict[str, Any], listed: int = 5) -> list[str]:
    """A report's skips as the terminal shows them: the count by reason, then the first `listed` with file:line."""
    if not skips["count"]:
        return []
    by_reason = ", ".join(f"{k} ({v})" for k, v in skips["by_reason"].items())
    return [f"skipped {skips['count']} records: {by_reason}"] + [f"  {line}" for line in skips["listed"][:listed]]


def check_accounting(report: dict[str, Any]) -> None:
    """Raise AssertionError unless every record is accounted for (used by tests and at the end of prepare)."""
    for name, s in list(report["sources"].items()) + [("total", report["total"])]:
        assert s["records"] == s["documents"]["in"] + s["conversations"]["in"] + s["skipped"], name
        for kind in ("documents", "conversations", "conversations_as_text"):
            c = s[kind]
            assert c["in"] == c["kept"] + c["removed"], (name, kind, c)


# ----------------------------------------------------------------------------- progress


class Progress:
    """A rich progress display when enabled; silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._p = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress
            from rich.progress import TimeRemainingColumn

            self.console = console(stderr=True)
            self._p = RichProgress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
                               MofNCompleteColumn(), TextColumn("{task.fields[info]}", markup=False),
                               TimeElapsedColumn(), TimeRemainingColumn(),
                               console=self.console, transient=False)

    def __enter__(self) -> "Progress":
        if self._p is not None:
            self._p.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)

    def task(self, description: str, total: int | None = None) -> int | None:
        return self._p.add_task(description, total=total, info="") if self._p is not None else None

    def advance(self, task: int | None, n: int = 1, info: str = "") -> None:
        if self._p is not None and task is not None:
            self._p.update(task, advance=n, info=info)

    def print(self, msg: str) -> None:
        if self.enabled:
            self.console.print(msg)
