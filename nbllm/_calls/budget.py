"""The session's budget (``%llm_budget 2.00``): a limit on what the session's calls cost, in
the currency of the prices (the server's reported cost, or ``--price``).

Spending is summed by the call history as calls are recorded (every kind passes it), by
provider. Before
each route of a call is tried, the engine asks `check`: a call is refused, with nothing sent,
when the budget is spent or when its estimated cost (the prompt's tokens at the input price,
and the reply's limit, or a typical reply, at the output price) would pass what is left. A
model without a price cannot be estimated; its first call says so once. At 80% spent a
warning is shown once. ``nbllm.map``'s ``max_cost`` applies within the budget.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from nbllm._calls.history import get_history
from nbllm._calls.request import ChatRequest
from nbllm._calls.tokens import default_counter
from nbllm._constants import TYPICAL_REPLY_TOKENS
from nbllm._exceptions import BudgetError
from nbllm._providers.resolved import Resolved
from nbllm._session import session

WARN_AT = 0.8


class BudgetWarning(UserWarning):
    """The session has spent most of its budget, or a model's calls cannot be counted."""


class Budget:
    def __init__(self) -> None:
        self.limit: float | None = None
        self._warned = False
        self._unpriced: set[str] = set()
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def spent_by_provider(self) -> dict[str, float]:
        return get_history().spent_by_provider()

    @property
    def spent(self) -> float:
        return sum(self.spent_by_provider.values())

    def set(self, limit: float | None) -> None:
        """Set (or with None, lift) the limit, over what the session's calls have cost since it
        began (the history sums it as calls are recorded)."""
        if limit is not None and not limit >= 0:
            raise BudgetError(f"a budget is an amount of 0 or more, not {limit}")
        self.limit = limit
        self._warned = False
        if self._unsubscribe is None:
            self._unsubscribe = get_history().subscribe(lambda _record: self._warn_if_near())
        self._warn_if_near()

    def _warn_if_near(self) -> None:
        if self.limit and not self._warned and self.spent >= WARN_AT * self.limit:
            self._warned = True
            message = (
                f"{self.spent:.4g} of the session's budget of {self.limit:.4g} is spent "
                f"({self.spent / self.limit:.0%}); %llm_budget shows what is left"
            )
            get_history().notice = message  # under the next reply, where the user is looking
            warnings.warn(f"nbllm: {message}", BudgetWarning, stacklevel=2)

    def check(self, request: ChatRequest, resolved: Resolved) -> None:
        """Refuse (a `BudgetError`) a chat call to `resolved` that the budget cannot pay for:
        its prompt, and its reply limit or a typical reply."""
        if self.limit is not None:
            reply = request.max_tokens or TYPICAL_REPLY_TOKENS
            self.check_tokens(resolved, lambda: default_counter().messages(request.messages), reply)

    def check_tokens(self, resolved: Resolved, prompt_tokens: Callable[[], int], reply_tokens: int) -> None:
        """Refuse a call of about this many tokens (the prompt's counted only when a price can
        use them) that the budget cannot pay for; the chat and embedding engines ask."""
        if self.limit is None:
            return
        left = self.limit - self.spent
        name = resolved.qualified_name
        if left <= 0:
            raise BudgetError(
                f"the session's budget of {self.limit:.4g} is spent ({self.spent:.4g}), so {name} "
                "was not asked",
                hint="raise it with %llm_budget AMOUNT, or lift it with %llm_budget off",
            )
        price = resolved.spec.price
        if price is None:
            if name not in self._unpriced:
                self._unpriced.add(name)
                warnings.warn(
                    f"nbllm: {name} has no price, so the budget cannot estimate its calls before "
                    "they are sent (a cost the server reports still counts); give it one with "
                    f"%llm_provider model {resolved.provider.name} set {resolved.model} --price IN,OUT",
                    BudgetWarning,
                    stacklevel=2,
                )
            return
        prompt = prompt_tokens()
        estimate = price.cost(prompt, reply_tokens)
        if estimate > left:
            up_to = f", up to {reply_tokens:,} reply tokens" if reply_tokens else ""
            raise BudgetError(
                f"the call would cost about {estimate:.4g} ({prompt:,} prompt tokens{up_to}) and "
                f"{left:.4g} of the budget is left, so {name} was not asked",
                hint="raise the budget (%llm_budget AMOUNT), "
                + ("shorten the prompt, or lower --max-tokens" if reply_tokens else "or send fewer texts"),
            )

    def summary(self) -> str:
        spent, by = self.spent, _by_provider(self.spent_by_provider)
        if self.limit is None:
            return f"No budget set (%llm_budget AMOUNT sets one). Spent this session: {spent:.4g} ({by})."
        return f"Budget {self.limit:.4g}: spent {spent:.4g} ({by}), {max(self.limit - spent, 0):.4g} left."


def _by_provider(spent: dict[str, float]) -> str:
    return ", ".join(f"{p} {c:.4g}" for p, c in sorted(spent.items())) or "nothing yet"


def get_budget() -> Budget:
    return session().part(Budget)
