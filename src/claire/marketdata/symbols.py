"""Symbols in exchange form: upper case, no separator (``BTCUSDT``)."""

from __future__ import annotations

import re
from pathlib import Path

#: Quote assets recognised when a symbol has to be read from a file name, longest first so
#: ``FDUSD`` wins over ``USD``.
QUOTE_ASSETS: tuple[str, ...] = tuple(
    sorted(
        {"USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USDP", "DAI", "USD", "EUR", "GBP", "TRY", "BRL",
         "JPY", "AUD", "BTC", "ETH", "BNB"},
        key=len,
        reverse=True,
    )
)

#: Words found in market data file names that are never a symbol.
_NOT_SYMBOL = {
    "SPOT", "FUTURES", "FUTURE", "PERP", "SWAP", "MARGIN", "TRADES", "TRADE", "QUOTES", "QUOTE",
    "BARS", "BAR", "KLINES", "KLINE", "CANDLES", "OHLCV", "DEPTH", "BOOKTICKER", "TICKS", "TICK",
    "DATA", "BINANCE", "MEXC", "MARK", "INDEX", "FUNDING", "RATE",
}

_DATA_SUFFIXES = {".feather", ".arrow", ".ipc", ".parquet", ".gz", ".csv", ".zip", ".json", ".jsonl", ".txt",
                  ".zst"}
_SEPARATORS = re.compile(r"[/_\-:. ]+")
_TOKEN = re.compile(r"^[A-Z0-9]+$")


def normalize_symbol(symbol: str) -> str:
    """``btc/usdt``, ``BTC_USDT``, ``BTC-USDT`` -> ``BTCUSDT``; futures ``BTC/USDT:USDT`` -> ``BTCUSDT``."""
    text = symbol.strip().upper()
    if ":" in text:  # ccxt futures notation: BASE/QUOTE:SETTLE
        text = text.split(":", 1)[0]
    out = _SEPARATORS.sub("", text)
    if not out or not _TOKEN.match(out):
        raise ValueError(f"not a valid symbol: {symbol!r} (expected e.g. BTCUSDT or BTC/USDT)")
    return out


def _is_base(token: str) -> bool:
    return bool(token) and token not in _NOT_SYMBOL and any(c.isalpha() for c in token)


def _split_quote(token: str) -> str | None:
    """``BTCUSDT`` -> ``BTCUSDT`` when it ends with a known quote asset after a base."""
    for quote in QUOTE_ASSETS:
        if token.endswith(quote) and _is_base(token[: -len(quote)]):
            return token
    return None


def symbol_from_path(path: str | Path) -> str:
    """Tell the symbol from a market data file name.

    ``BTC_USDT-1m.feather`` -> ``BTCUSDT`` (freqtrade), ``spot_btcusdt_20240808.gz`` -> ``BTCUSDT``
    (capture), ``btcusdt-trades.parquet`` -> ``BTCUSDT``. Raises ``ValueError`` when the name does
    not tell; pass the symbol explicitly then (``--symbol``).
    """
    p = Path(path)
    name = p.name
    stem = name
    while True:
        suffix = Path(stem).suffix
        if suffix.lower() not in _DATA_SUFFIXES:
            break
        stem = stem[: -len(suffix)]
    tokens = [t for t in _SEPARATORS.split(stem.upper()) if t]
    # 1. a pair of tokens BASE, QUOTE (freqtrade: BTC_USDT-1m, futures BTC_USDT_USDT-1m-futures)
    for i in range(len(tokens) - 1):
        base, quote = tokens[i], tokens[i + 1]
        if quote in QUOTE_ASSETS and _is_base(base) and _TOKEN.match(base):
            return base + quote
    # 2. one token BASEQUOTE (btcusdt-trades, spot_btcusdt_20240808)
    for token in tokens:
        if _TOKEN.match(token):
            found = _split_quote(token)
            if found is not None:
                return found
    raise ValueError(
        f"cannot tell the symbol from the file name {name!r}; pass it explicitly (--symbol BTCUSDT)"
    )
