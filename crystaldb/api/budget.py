"""The run-time part of the cost limit: sizes only the data knows, charged when known.

The estimate (`limits`) prices a structure's `sites` at NOMINAL_SITES and each edge array of
a quotient graph at NOMINAL_EDGES values; a request's Budget holds what the estimate left
under the limit, and a cell or graph larger than assumed charges the excess before anything of
it is built. A request that runs out is refused like one estimated too costly.
"""

from __future__ import annotations

import threading

from crystaldb.api.errors import CostError

NOMINAL_SITES = 100  # sites assumed per structure; the excess is charged at run time
NOMINAL_EDGES = 1_000  # values assumed per edge array of a quotient graph; likewise
COST_SETTING = "CRYSTALDB_API_MAX_COST"


class Budget:
    """What a request may still spend once its estimate is counted: sizes only the data knows
    (a cell's sites, a graph's edges) are charged here before anything is built."""

    def __init__(self, remaining: int | None = None, limit: int | None = None) -> None:
        self.remaining = remaining  # None: unlimited
        self.limit = limit
        self._lock = threading.Lock()

    def charge(self, units: int, what: str) -> None:
        """Spend `units` on `what`, or CostError when the budget does not cover them."""
        if self.remaining is None or units <= 0:
            return
        with self._lock:
            self.remaining -= units
            left = self.remaining
        if left < 0:
            raise CostError(
                f"query cost is over the limit of {self.limit:,} ({COST_SETTING}) once the "
                f"sizes of the data are known ({what} is larger than the estimate assumed): ask "
                "for fewer structures per page (first) and page on with `after: endCursor`"
            )


def charge_sites(budget: Budget, nsites: int, fields: int, structure_id: object) -> None:
    """Charge the sites beyond NOMINAL_SITES of one structure, each with its selected fields."""
    budget.charge(
        (nsites - NOMINAL_SITES) * (1 + fields), f"structure {structure_id} with {nsites} sites"
    )


def charge_edges(budget: Budget, values: int, what: str) -> None:
    """Charge the values of an edge array beyond NOMINAL_EDGES."""
    budget.charge(values - NOMINAL_EDGES, what)
