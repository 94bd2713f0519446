"""Built-in strategies: ``sma_cross`` and ``momentum``.

Both are per-symbol (one instance per symbol, see :mod:`claire.strategy.base`) and leave the
quantity to the risk manager (``quantity=None``).
"""

from __future__ import annotations

import math
from collections import deque
from decimal import Decimal
from typing import Any, ClassVar

from claire.events import Bar, Side
from claire.strategy.base import Strategy
from claire.strategy.indicators import MACD, RSI, BollingerBands
from claire.strategy.params import Param, Rule

__all__ = ["Momentum", "SmaCross"]

_ZERO = Decimal(0)
_ONE = Decimal(1)
_Q4 = Decimal("0.0001")
_SELL = Side.SELL  # a module constant: reading a member from its Enum class is slow on Python 3.11


class SmaCross(Strategy):
    """Long-only crossing of two simple moving averages of the bar close.

    Each bar feeds ``bar.close`` to a fast and a slow SMA. From the ``slow``-th bar on (both
    averages exist) the strategy looks at ``d = fast_avg - slow_avg``, decided *exactly*: its
    sign is the sign of ``fast_sum * slow - slow_sum * fast`` in Decimal, so equal averages are
    a tie (``d == 0``), neither above nor below.

    - buy (quantity left to the risk manager) when ``d > 0`` and the previous bar's ``d <= 0``,
      unless its last signal was already a buy;
    - close the long (``close(Side.SELL)``) when ``d < 0`` and the previous bar's ``d >= 0``;
    - nothing on the first evaluated bar (there is no previous ``d``), nothing at a tie.

    The "unless" is for a touch: ``d`` going ``+, 0, +`` has no crossing, and a second buy
    would double the long. (It makes the rule "buy only when flat, close only when long" as far
    as fills go, which is what the backtrader parity reference does.) A repeated close
    (``-, 0, -``) is still sent: harmless when flat, and a second chance if the first one was
    refused. Apart from remembering its last signal the strategy does not track positions: a
    close without a position is a no-op for the risk manager.

    Metadata: ``fast_sma`` and ``slow_sma`` (the averages, as str).

    The per-bar path keeps the two exact running sums itself over one ``deque(maxlen=slow)``
    (the fast window is its newest ``fast`` values): four Decimal additions and one or two
    multiplications, no division and no allocation.
    """

    name: ClassVar[str] = "sma_cross"
    version: ClassVar[str] = "1"
    parameters: ClassVar[dict[str, Param]] = {
        "fast": Param(10, min=1, description="period of the fast SMA (bars)"),
        "slow": Param(30, min=1, description="period of the slow SMA (bars)"),
    }
    rules: ClassVar[tuple[Rule, ...]] = (Rule("fast < slow"),)

    @classmethod
    def warmup_bars(cls, params: dict[str, Any]) -> int:
        """``slow`` bars: the slow-th is the first evaluated one, so the next bar may cross."""
        return int(params.get("slow", cls.defaults["slow"]))

    def setup(self) -> None:
        """The exact running sums over one window of closes (see the class doc)."""
        # the parameters are checked against their declaration (``parameters``, ``rules``)
        fast = self.params["fast"]
        slow = self.params["slow"]
        self.fast = fast
        self.slow = slow
        self._dfast = Decimal(fast)
        self._dslow = Decimal(slow)
        # one buffer: the fast window is the newest `fast` values of the slow one
        self._sbuf: deque[Decimal] = deque(maxlen=slow)
        self._fpos = slow - fast  # index in the full slow buffer of the fast window's oldest value
        # the sign of fast_sum * slow - slow_sum * fast is that of fast_sum * (slow / g) -
        # slow_sum * (fast / g), g = gcd: smaller exact products, and one multiplication less
        # when fast divides slow (10/30: fast_sum * 3 against slow_sum)
        g = math.gcd(fast, slow)
        self._ka = Decimal(slow // g)
        self._kb = Decimal(fast // g) if fast // g != 1 else None
        self.fast_sum = _ZERO
        self.slow_sum = _ZERO
        self._warm = False
        #: sign of the last evaluated d: 1, 0, -1 (None before the first evaluation)
        self.prev_sign: int | None = None
        #: whether the last signal was a buy (then no buy again before a close)
        self.bought = False

    @property
    def fast_avg(self) -> Decimal | None:
        """The fast SMA (None before ``fast`` bars)."""
        return self.fast_sum / self._dfast if len(self._sbuf) >= self.fast else None

    @property
    def slow_avg(self) -> Decimal | None:
        """The slow SMA (None before ``slow`` bars)."""
        return self.slow_sum / self._dslow if self._warm else None

    def get_state(self) -> dict[str, Any]:
        """The window of closes (its maxlen is ``slow``), the exact sums and the crossing state."""
        return {"window": [str(x) for x in self._sbuf], "fast_sum": str(self.fast_sum),
                "slow_sum": str(self.slow_sum), "warm": self._warm, "prev_sign": self.prev_sign,
                "bought": self.bought}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_state`` returned (Decimals may arrive as their strings)."""
        self._sbuf = deque((Decimal(x) for x in state["window"]), maxlen=self.slow)
        self.fast_sum = Decimal(state["fast_sum"])
        self.slow_sum = Decimal(state["slow_sum"])
        self._warm = bool(state["warm"])
        ps = state["prev_sign"]
        self.prev_sign = None if ps is None else int(ps)
        self.bought = bool(state["bought"])

    def on_bar(self, bar: Bar) -> None:
        """Move the sums; buy or close on a crossing (see the class doc)."""
        x = bar.close
        sbuf = self._sbuf
        if self._warm:
            fs = self.fast_sum = self.fast_sum + x - sbuf[self._fpos]
            ss = self.slow_sum = self.slow_sum + x - sbuf[0]
            sbuf.append(x)
            a = fs * self._ka
            kb = self._kb
            b = ss if kb is None else ss * kb
            if a > b:
                if self.prev_sign != 1:
                    self.prev_sign = 1
                    if not self.bought:
                        self.bought = True
                        self.buy(metadata=self._meta())
            elif a < b:
                if self.prev_sign != -1:
                    self.prev_sign = -1
                    self.bought = False
                    self.close(_SELL, metadata=self._meta())
            else:
                self.prev_sign = 0
            return
        # warm-up: fill the buffer; the slow-th bar is the first evaluated one (no signal)
        n = len(sbuf)
        if n >= self.fast:
            self.fast_sum += x - sbuf[n - self.fast]
        else:
            self.fast_sum += x
        self.slow_sum += x
        sbuf.append(x)
        if n + 1 == self.slow:
            self._warm = True
            a = self.fast_sum * self._dslow
            b = self.slow_sum * self._dfast
            self.prev_sign = (a > b) - (a < b)

    def _meta(self) -> dict[str, Any]:
        return {
            "fast_sma": str(self.fast_sum / self._dfast),
            "slow_sma": str(self.slow_sum / self._dslow),
        }


class Momentum(Strategy):
    """RSI, MACD and Bollinger bands of the bar close, combined; emits on changes of stance only.

    Indicators (float, TA-Lib conventions, see :mod:`claire.strategy.indicators`):
    RSI(``rsi_period``), MACD(``macd_fast``, ``macd_slow``, ``macd_signal``) and Bollinger
    bands (``bb_period``, ``bb_std``). All three are warm on bar 34 with the defaults, so the
    first signal can come on bar 35 (a "turn" needs the previous histogram). It keeps a *stance*: flat, long or (only with ``allow_short``) short.

    Rule, with ``hist`` the MACD histogram, ``%B`` the close's position between the bands:

    - flat -> long (``buy``): the histogram turns positive (previous bar ``<= 0``, now ``> 0``)
      while RSI < ``rsi_overbought`` and close < upper band;
    - long -> flat (``close(SELL)``): histogram < 0, or RSI > ``rsi_overbought``, or
      close > upper band (momentum gone, or stretched: take the move);
    - with ``allow_short``, mirrored: flat -> short (``sell``) when the histogram turns
      negative while RSI > ``rsi_oversold`` and close > lower band; short -> flat
      (``close(BUY)``) when histogram > 0, or RSI < ``rsi_oversold``, or close < lower band.
      A long whose exit is a negative turn of the histogram may go short on the same bar
      (close first, then sell), and the other way round.

    So a signal is emitted only when the stance changes, never on every bar. The stance is what
    the strategy asked for: it does not know whether the risk manager approved it.

    Confidence (0..1, 4 dp) measures how much the three agree with the signal's direction. Each
    gives a score in 0..1 for "up" (for "down" signals, 1 - score):

    - MACD: 1 if the histogram is > 0, 0 if < 0, 0.5 at 0;
    - RSI: (``rsi_overbought`` - RSI) / (``rsi_overbought`` - ``rsi_oversold``), clipped;
    - Bollinger: 1 - %B, clipped (1 at or below the lower band, 0 at or above the upper).

    confidence = mean of the three. An entry always has the MACD's vote, so it is >= 1/3; an
    exit forced by RSI or the band while the histogram is still positive scores lower.

    Metadata of every signal: ``rsi``, ``macd``, ``macd_signal``, ``macd_hist``, ``bb_upper``,
    ``bb_middle``, ``bb_lower``, ``bb_position`` (floats) and ``reason`` (str).
    """

    name: ClassVar[str] = "momentum"
    version: ClassVar[str] = "1"
    parameters: ClassVar[dict[str, Param]] = {
        "rsi_period": Param(14, min=1, description="RSI period (bars)"),
        "macd_fast": Param(12, min=1, description="MACD fast EMA period (bars)"),
        "macd_slow": Param(26, min=1, description="MACD slow EMA period (bars)"),
        "macd_signal": Param(9, min=1, description="MACD signal EMA period (bars)"),
        "bb_period": Param(20, min=1, description="Bollinger band period (bars)"),
        "bb_std": Param(2.0, min=0, description="Bollinger band width (standard deviations)"),
        "rsi_overbought": Param(70.0, min=0, max=100, description="RSI above this: overbought"),
        "rsi_oversold": Param(30.0, min=0, max=100, description="RSI below this: oversold"),
        "allow_short": Param(False, description="also go short (mirrored rule)"),
    }
    rules: ClassVar[tuple[Rule, ...]] = (
        Rule("macd_fast < macd_slow"),
        Rule("rsi_oversold < rsi_overbought"),
    )

    @classmethod
    def warmup_bars(cls, params: dict[str, Any]) -> int:
        """The bars before the first possible signal (RSI needs ``rsi_period + 1``, MACD
        ``macd_slow + macd_signal - 1``, the bands ``bb_period``; one more for the histogram's
        turn), plus a margin of three times the longest smoothing period, so that the EMAs and
        Wilder's RSI have forgotten their seeds (their weight is below 1 % then): 113 bars with
        the defaults."""
        p = {**cls.defaults, **params}
        ready = max(int(p["rsi_period"]) + 1, int(p["macd_slow"]) + int(p["macd_signal"]) - 1, int(p["bb_period"])) + 1
        return ready + 3 * max(int(p["rsi_period"]), int(p["macd_slow"]))

    FLAT: ClassVar[int] = 0
    LONG: ClassVar[int] = 1
    SHORT: ClassVar[int] = -1

    def setup(self) -> None:
        """The three indicators, the thresholds and a flat stance."""
        p = self.params  # checked against ``parameters`` and ``rules``
        ob = float(p["rsi_overbought"])
        os_ = float(p["rsi_oversold"])
        self.rsi = RSI(p["rsi_period"])
        self.macd = MACD(p["macd_fast"], p["macd_slow"], p["macd_signal"])
        self.bb = BollingerBands(p["bb_period"], p["bb_std"])
        self.overbought = ob
        self.oversold = os_
        self._rsi_span = ob - os_
        self.allow_short = bool(p["allow_short"])
        self.stance = self.FLAT
        self._prev_hist: float | None = None
        self._rsi_update = self.rsi.update
        self._macd_update = self.macd.update
        self._bb_update = self.bb.update

    def get_state(self) -> dict[str, Any]:
        """The three indicators' states, the stance and the previous histogram."""
        return {"rsi": self.rsi.get_state(), "macd": self.macd.get_state(), "bb": self.bb.get_state(),
                "stance": self.stance, "prev_hist": self._prev_hist}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_state`` returned, into the indicators ``setup`` made (their bound
        ``update`` methods stay valid)."""
        self.rsi.set_state(state["rsi"])
        self.macd.set_state(state["macd"])
        self.bb.set_state(state["bb"])
        self.stance = int(state["stance"])
        ph = state["prev_hist"]
        self._prev_hist = None if ph is None else float(ph)

    def on_bar(self, bar: Bar) -> None:
        """Update the indicators; on a change of stance, close and/or open (see the class doc)."""
        x = bar.close
        xf = float(x)  # once: RSI and MACD compute in float; the bands keep exact Decimal sums
        rsi = self._rsi_update(xf)
        m = self._macd_update(xf)
        bands = self._bb_update(x)
        if bands is None or m is None or rsi is None:
            return
        hist = m[2]
        prev = self._prev_hist
        self._prev_hist = hist
        if prev is None:
            return  # first bar with all three: nothing has "turned" yet
        stance = self.stance
        # an exit returns whether the same bar may open the other way (the histogram turned)
        if stance == 1 and not self._exit_long(hist, prev, rsi, xf, bands[0]):
            return
        if stance == -1 and not self._exit_short(hist, prev, rsi, xf, bands[2]):
            return
        # flat: enter on a turn of the histogram
        if hist > 0.0:
            if prev <= 0.0 and rsi < self.overbought and xf < bands[0]:
                self.stance = self.LONG
                self.buy(self._confidence(1, hist, rsi, xf),
                         metadata=self._meta("macd_hist_turned_positive", rsi, xf))
        elif hist < 0.0 and prev >= 0.0 and self.allow_short and rsi > self.oversold and xf > bands[2]:
            self.stance = self.SHORT
            self.sell(self._confidence(-1, hist, rsi, xf),
                      metadata=self._meta("macd_hist_turned_negative", rsi, xf))

    def _exit_long(self, hist: float, prev: float, rsi: float, xf: float, upper: float) -> bool:
        """Long -> flat when momentum is gone or stretched; True: the histogram turned negative
        on this bar, so a short may open on it too."""
        if hist < 0.0:
            reason = "macd_hist_negative"
        elif rsi > self.overbought:
            reason = "rsi_overbought"
        elif xf > upper:
            reason = "above_upper_band"
        else:
            return False
        self.stance = self.FLAT
        self.close(Side.SELL, self._confidence(-1, hist, rsi, xf), metadata=self._meta(reason, rsi, xf))
        return reason == "macd_hist_negative" and prev >= 0.0

    def _exit_short(self, hist: float, prev: float, rsi: float, xf: float, lower: float) -> bool:
        """Short -> flat, mirrored; True: the histogram turned positive on this bar, so a long
        may open on it too."""
        if hist > 0.0:
            reason = "macd_hist_positive"
        elif rsi < self.oversold:
            reason = "rsi_oversold"
        elif xf < lower:
            reason = "below_lower_band"
        else:
            return False
        self.stance = self.FLAT
        self.close(Side.BUY, self._confidence(1, hist, rsi, xf), metadata=self._meta(reason, rsi, xf))
        return reason == "macd_hist_positive" and prev <= 0.0

    def _confidence(self, direction: int, hist: float, rsi: float, x: float) -> Decimal:
        s_macd = 1.0 if hist > 0.0 else (0.0 if hist < 0.0 else 0.5)
        s_rsi = min(1.0, max(0.0, (self.overbought - rsi) / self._rsi_span))
        pos = self.bb.position(x)
        s_bb = 0.5 if pos is None else min(1.0, max(0.0, 1.0 - pos))  # the bands are warm when it signals
        up = (s_macd + s_rsi + s_bb) / 3.0
        conf = up if direction > 0 else 1.0 - up
        q = Decimal(repr(conf)).quantize(_Q4)
        return _ZERO if q < _ZERO else (_ONE if q > _ONE else q)

    def _meta(self, reason: str, rsi: float, x: float) -> dict[str, Any]:
        bb = self.bb
        macd = self.macd
        return {
            "reason": reason,
            "rsi": rsi,
            "macd": macd.macd,
            "macd_signal": macd.signal,
            "macd_hist": macd.hist,
            "bb_upper": bb.upper,
            "bb_middle": bb.middle,
            "bb_lower": bb.lower,
            "bb_position": bb.position(x),
        }
