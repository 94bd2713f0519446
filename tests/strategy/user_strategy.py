"""A small user strategy, loaded in the registry tests as ``tests.strategy.user_strategy:Breakout``."""

from __future__ import annotations

from collections import deque
from decimal import Decimal
from typing import Any, ClassVar

from claire.events import Bar, Side
from claire.strategy import Strategy


class Breakout(Strategy):
    """Buy when the close exceeds the highest of the previous ``lookback`` closes by more than
    ``threshold``; close the long when it falls below the lowest of them."""

    name: ClassVar[str] = "breakout"
    version: ClassVar[str] = "2"
    defaults: ClassVar[dict[str, Any]] = {"lookback": 3, "threshold": Decimal("0"), "size": Decimal("0.5")}

    def setup(self) -> None:
        self.window: deque[Decimal] = deque(maxlen=self.params["lookback"])

    def on_bar(self, bar: Bar) -> None:
        w = self.window
        if len(w) == w.maxlen:
            if bar.close > max(w) + self.params["threshold"]:
                self.buy(Decimal("0.75"), quantity=self.params["size"], metadata={"high": str(max(w))})
            elif bar.close < min(w):
                self.close(Side.SELL, metadata={"low": str(min(w))})
        w.append(bar.close)


class Outer:
    class Inner(Breakout):
        name: ClassVar[str] = "inner"


class NotAStrategy:
    """A class, but not a Strategy."""


def not_a_class() -> None:
    """A function, not a class."""


SOME_NUMBER = 42
