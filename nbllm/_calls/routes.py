"""Whom a call asks: the model a name resolves to, then its fallbacks, ordered once per call.

Fallback entries are written ``MODEL[@PRIORITY[:WEIGHT]]``; entries of the same priority share
the load by weight (API7 ai-proxy-multi's rule). The random source is passed in, so tests
state orders as a table.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nbllm._providers.resolved import Resolved
from nbllm._providers.store import Store, get_store


@dataclass(frozen=True)
class Route:
    """One model to try, with API7 ai-proxy-multi's priority (higher first) and weight."""

    model: str
    priority: int = 0
    weight: float = 1.0


def order_routes(routes: Sequence[Route], rng: Callable[[], float] = random.random) -> list[str]:
    """The order to try `routes`: by priority, highest first; within a priority, a weighted
    random order, so equal-priority entries share the load in proportion to their weights."""
    by_priority: dict[int, list[Route]] = {}
    for route in routes:
        by_priority.setdefault(route.priority, []).append(route)
    ordered: list[str] = []
    for priority in sorted(by_priority, reverse=True):
        pool = [r for r in by_priority[priority] if r.weight > 0]
        while pool:
            total = sum(r.weight for r in pool)
            point = rng() * total
            for index, route in enumerate(pool):
                point -= route.weight
                if point < 0 or index == len(pool) - 1:
                    ordered.append(pool.pop(index).model)
                    break
    return ordered


_ROUTE_SPEC = re.compile(r"^(?P<model>.+)@(?P<priority>-?\d+)(?::(?P<weight>\d+(?:\.\d+)?))?$")


def parse_routes(text: str | Sequence[str]) -> list[Route]:
    """``"a,b"`` or ``["a", "b@2", "c@1:3"]`` -> routes, written ``MODEL[@PRIORITY[:WEIGHT]]``.

    Bare entries keep their list order (earlier entries get a higher priority).
    An ``@`` not followed by a number is part of the model id (Vertex ids hold one).
    """
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    routes = []
    for position, item in enumerate(items):
        match = _ROUTE_SPEC.match(item)
        if match is None:
            routes.append(Route(item, priority=-position))
        else:
            weight = float(match["weight"] or 1.0)
            routes.append(Route(match["model"], int(match["priority"]), weight))
    return routes


def plan_routes(
    model: str | None, fallback: str | Sequence[str] | None = None, store: Store | None = None
) -> list[Resolved]:
    """Decide once whom a call asks: the model `model` names, then its fallbacks (the given
    ones, else its provider's) in the order to try them. Weighted entries are drawn here, so
    every round of a cell tries the same order. Raises a `NameResolutionError` for a bad name."""
    store = store or get_store()
    primary = store.resolve(model)
    spec = fallback if fallback is not None else primary.provider.fallback
    routes = [primary]
    for name in order_routes(parse_routes(spec)) if spec else []:
        resolved = store.resolve(name)
        if resolved.qualified_name not in {r.qualified_name for r in routes}:
            routes.append(resolved)
    return routes
