"""Spending: estimates, the caps and the cost confirmation, this session's totals per cost unit (USD and
Scenario's creative units are never added together), quotes, and how an amount is written."""
from __future__ import annotations

from ..backend import registry
from . import prefs
from .queue import RESULT_LISTENERS


class SpendingError(ValueError):
    """A cap refuses the job (nothing was sent)."""


def money(amount: float | None, unit: str) -> str:
    """"$0.0300" or "24 CU"; "" for an unknown amount."""
    if amount is None:
        return ""
    return f"${amount:.4f}" if unit == "USD" else f"{amount:g} {unit}"


class Session:
    def __init__(self):
        self.totals: dict[str, float] = {}  # cost unit -> spent this session
        self.prices: dict[tuple, float] = {}  # (backend, mode, resolution) -> last reported price per result

    def total(self, unit: str = "USD") -> float:
        return self.totals.get(unit, 0.0)

    def record(self, job) -> None:
        """A result message arrived: learn its price, add what it cost (a quote spends nothing). An unknown
        cost (none reported, or no sane number: queue.job.sane_cost) counts as the estimate, so the caps
        still hold."""
        cost, unit = job.cost, job.cost_unit
        info = job.result.get("info") or {}
        count = len(job.result.get("seeds") or []) or info.get("number_results") or 1
        if cost is None:
            if job.is_quote or not job.info.needs_network:
                return
            cost = self.estimate(job.info, dict(job.settings, number_results=count), job.mode)
        else:
            self.prices[(job.backend, job.mode, job.settings.get("resolution"))] = float(cost) / count
        if not job.is_quote:
            self.totals[unit] = self.total(unit) + float(cost)

    def estimate(self, info: registry.BackendInfo, settings: dict, mode: str = "generate") -> float:
        """The registry's price list, else the last price the provider reported for such a job."""
        if info.prices:
            return info.estimate_cost(settings)
        return self.prices.get((info.id, mode, settings["resolution"]), 0.0) * settings["number_results"]

    def check_cap(self, info: registry.BackendInfo, settings: dict, mode: str = "generate") -> None:
        """Refuse a job that would take the session past its cap for the backend's unit: Session Cap (USD)
        or Credit Cap (other units)."""
        p = prefs.get()
        usd = info.cost_unit == "USD"
        cap = (p.session_cap if usd else p.session_credit_cap) if p else (5.0 if usd else 0.0)
        spent, estimate = self.total(info.cost_unit), self.estimate(info, settings, mode)
        if cap and spent + estimate > cap:
            name = "spending" if usd else "credit"
            raise SpendingError(f"Session {name} cap {money(cap, info.cost_unit)} reached (spent "
                                f"{money(spent, info.cost_unit)}, this job about {money(estimate, info.cost_unit)}): "
                                "raise it in the add-on preferences")

    def needs_confirmation(self, backend: str, settings: dict) -> float:
        """The estimated USD cost when it is above the preference's threshold, else 0."""
        info = registry.BY_ID.get(backend)
        if info is None or info.cost_unit != "USD":
            return 0.0
        estimate = info.estimate_cost(settings)
        threshold = prefs.get().confirm_above if prefs.get() else 0.0
        return estimate if estimate and estimate > threshold else 0.0


session = Session()


def summary(totals: dict[str, float]) -> str:
    """"$0.0600 + 24 CU": totals of several units side by side; "" when nothing was spent."""
    return " + ".join(money(amount, unit) for unit, amount in sorted(totals.items(), key=lambda t: t[0] != "USD"))


def quote_amount(job) -> str:
    """"24 CU (2 × 12)": the total, and per result when there are several."""
    info = job.result.get("info", {})
    count = int(info.get("number_results") or 1)
    each = f" ({count} × {info['cost_per_result']:g})" if count > 1 and "cost_per_result" in info else ""
    return money(job.cost, job.cost_unit) + each


def register():
    if session.record not in RESULT_LISTENERS:
        RESULT_LISTENERS.append(session.record)


def unregister():
    if session.record in RESULT_LISTENERS:
        RESULT_LISTENERS.remove(session.record)
