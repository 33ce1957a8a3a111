"""The conformance scorecard: how well a broker follows the OSB v2.17 spec and its profile (pure, no Django).

`catalog.check_catalog` reads a catalog document; `behaviour.check_behaviour` reads the calls the portal made to
the broker. Each check names the section it comes from and, when it fails, tells the broker's author what to fix,
quoting the spec. Levels: `error` (the spec says MUST), `warning` (SHOULD or RECOMMENDED), `info` (a convention
that makes the broker's services better to use).

Score (0-100) = the weights of the passed checks / the weights of the checks observed, times 100, rounded down;
weights: error 5, warning 2, info 1. A check not observed yet (`passed` None: no catalog fetched, no call of that
kind in the last 7 days) counts for nothing either way; with nothing observed at all the score is 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

LEVELS = ("error", "warning", "info")
WEIGHTS = {"error": 5, "warning": 2, "info": 1}
MAX_PROBLEMS_SHOWN = 5
SPEC = "OSB v2.17 spec > "
PROFILE = "OSB v2.17 profile > "


@dataclass(frozen=True)
class CheckResult:
    id: str
    title: str
    level: str
    passed: bool | None  # None: not observed yet
    detail: str
    spec: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    level: str
    spec: str  # the section it comes from
    quote: str  # the spec's own words
    fix: str  # what the broker's author should do

    def passed(self, detail: str) -> CheckResult:
        return CheckResult(self.id, self.title, self.level, True, detail, self.spec)

    def failed(self, problems: list[str], total: int | None = None) -> CheckResult:
        """A failure listing the first problems, what to do about them and the spec's words."""
        count = total if total is not None else len(problems)
        shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
        more = count - min(len(problems), MAX_PROBLEMS_SHOWN)
        listed = shown + (f"; and {more} more" if more > 0 else "")
        detail = f"{listed}. {self.fix} The spec: “{self.quote}”"
        return CheckResult(self.id, self.title, self.level, False, detail, self.spec)

    def not_observed(self, why: str) -> CheckResult:
        return CheckResult(self.id, self.title, self.level, None, f"Not observed yet: {why}", self.spec)

    def outcome(self, problems: list[str], passed: str) -> CheckResult:
        return self.failed(problems) if problems else self.passed(passed)


def score(results: Iterable[CheckResult]) -> int:
    observed = [r for r in results if r.passed is not None]
    total = sum(WEIGHTS[r.level] for r in observed)
    if not total:
        return 0
    return 100 * sum(WEIGHTS[r.level] for r in observed if r.passed) // total
