"""Every market data file that cannot be read: one DataFileError, one line naming the file and
what was expected. One test per case and format (feather, parquet, CSV, capture where it applies)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as pf
import pyarrow.parquet as pq
import pytest

from claire.marketdata import DataFileError, detect_format, iter_binance_capture, open_market_data

FIXTURES = Path(__file__).parent / "fixtures"
SPOT_CSV = FIXTURES / "BTCUSDT-1m-2021-01.csv"
FUT_CSV = FIXTURES / "BTCUSDT-1m-2025-01.csv"


def _refused(paths: list[Path] | Path, *expect: str) -> str:
    """open_market_data refuses with one DataFileError line naming the file and the ``expect`` texts."""
    with pytest.raises(DataFileError) as info:
        md = open_market_data(paths)
        list(md)
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg and "/arrow/" not in msg, msg
    assert isinstance(info.value, ValueError)
    for text in expect:
        assert text in msg, (text, msg)
    return msg


def _bars_table(n: int = 3, **override) -> pa.Table:
    cols = {
        "date": pa.array([1_700_000_040_000_000_000 + k * 60_000_000_000 for k in range(n)], pa.timestamp("ns", tz="UTC")),
        "open": [10.0] * n, "high": [11.0] * n, "low": [9.0] * n, "close": [10.5] * n, "volume": [1.0] * n,
    }
    cols.update(override)
    return pa.table(cols)


@pytest.fixture
def files(tmp_path: Path, data_dir: Path) -> dict[str, Path]:
    """One good file per format, copied into tmp_path."""
    out = {}
    for key, src, name in (("feather", data_dir / "BTC_USDT-1m.feather", "BTC_USDT-1m.feather"),
                           ("trades", data_dir / "btcusdt-trades.parquet", "btcusdt-trades.parquet"),
                           ("quotes", data_dir / "btcusdt-quotes.parquet", "btcusdt-quotes.parquet"),
                           ("csv", SPOT_CSV, "BTCUSDT-1m-2021-01.csv")):
        out[key] = tmp_path / name
        shutil.copyfile(src, out[key])
    gz = tmp_path / "BTCUSDT-1m-2021-01-02.csv.gz"
    gz.write_bytes(gzip.compress(SPOT_CSV.read_bytes()))
    out["csv.gz"] = gz
    zp = tmp_path / "BTCUSDT-1m-2021-01-03.zip"
    with zipfile.ZipFile(zp, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(SPOT_CSV, "BTCUSDT-1m-2021-01-03.csv")
    out["zip"] = zp
    return out


KINDS = ["feather", "trades", "quotes", "csv", "csv.gz", "zip"]


@pytest.mark.parametrize("kind", KINDS)
def test_missing(tmp_path: Path, kind: str):
    path = tmp_path / f"ADA_USDT-1m.{kind}"
    msg = _refused([path], "market data file not found", path.name)
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError, for callers that look for one
        open_market_data([path])
    assert msg.startswith("market data file not found")


@pytest.mark.parametrize("kind", [*KINDS, "capture"])
def test_empty(tmp_path: Path, kind: str):
    path = tmp_path / ("spot_btcusdt_20240808.gz" if kind == "capture" else f"BTCUSDT-1m.{kind}")
    path.write_bytes(b"")
    _refused([path], path.name, "empty")


@pytest.mark.parametrize("kind", KINDS)
def test_truncated(files: dict[str, Path], kind: str):
    path = files[kind]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    _refused([path], path.name)


def test_truncated_csv_names_the_line(files: dict[str, Path]):
    path = files["csv"]
    text = path.read_text()
    path.write_text(text[: text.index("\n", 1000) + 30])  # the last line cut after 30 characters
    _refused([path], "BTCUSDT-1m-2021-01.csv: line ", "columns instead of 12", "truncated")


def test_truncated_capture(tmp_path: Path, capture_paths):
    path = tmp_path / capture_paths[0].name
    data = capture_paths[0].read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _refused([path], path.name, "cannot read the capture")


def _zero_rows(kind: str, path: Path, data_dir: Path) -> None:
    if kind == "feather":
        pf.write_feather(_bars_table(0), path)
    elif kind == "trades":
        pq.write_table(pq.read_table(data_dir / "btcusdt-trades.parquet").slice(0, 0), path)
    elif kind == "quotes":
        pq.write_table(pq.read_table(data_dir / "btcusdt-quotes.parquet").slice(0, 0), path)
    else:
        header = FUT_CSV.read_text().splitlines()[0] + "\n"
        if kind == "csv":
            path.write_text(header)
        elif kind == "csv.gz":
            path.write_bytes(gzip.compress(header.encode()))
        else:
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr("x.csv", header)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_rows(files: dict[str, Path], data_dir: Path, kind: str):
    path = files[kind]
    _zero_rows(kind, path, data_dir)
    _refused([path], path.name, "no rows")


@pytest.mark.parametrize(("kind", "write", "expect"), [
    ("feather", lambda p: pf.write_feather(pa.table({"timestamp": [1], "price": [1.0]}), p),
     "unknown feather layout"),
    ("feather", lambda p: pf.write_feather(_bars_table().drop_columns(["volume"]), p), "unknown feather layout"),
    ("parquet", lambda p: pq.write_table(pa.table({"timestamp": [1], "px": [1.0]}), p), "unknown parquet layout"),
    ("csv", lambda p: p.write_text("when,open,high,low,close,volume\n1,1,1,1,1,1\n"),
     "missing column(s) a time column"),
    ("csv", lambda p: p.write_text("timestamp,open,high,low,close\n1,1,1,1,1\n"), "missing column(s) volume"),
    ("csv", lambda p: p.write_text("1700000000000,1,1,1,1,1\n"), "no header row, and 6 columns instead of the 12"),
])
def test_wrong_columns(tmp_path: Path, kind: str, write: Callable[[Path], None], expect: str):
    path = tmp_path / f"BTCUSDT-1m.{kind}"
    write(path)
    _refused([path], path.name, expect)


@pytest.mark.parametrize(("kind", "write", "expect"), [
    ("feather", lambda p: pf.write_feather(_bars_table(open=["a", "b", "c"]), p),
     "column 'open' has type string, expected numbers"),
    ("feather", lambda p: pf.write_feather(_bars_table(date=["2024-01-01"] * 3), p),
     "column 'date' has type string, expected a timestamp"),
    ("parquet", lambda p: pq.write_table(pa.table({
        "timestamp": ["x"], "trade_id": [1], "price": [1.0], "quantity": [1.0], "buyer_maker": [True]}), p),
     "column 'timestamp' has type string, expected a timestamp"),
    ("parquet", lambda p: pq.write_table(pa.table({
        "timestamp": [1], "trade_id": [1], "price": ["abc"], "quantity": [1.0], "buyer_maker": [True]}), p),
     "column 'price' has type string, expected numbers"),
    ("csv", lambda p: p.write_text("timestamp,open,high,low,close,volume\n60,1,1,1,1,1\n120,1,abc,1,1,1\n"),
     "column 'high': 'abc' (row 3) is not a number"),
    ("csv", lambda p: p.write_text("timestamp,open,high,low,close,volume\n2024-01-01,1,1,1,1,1\nyesterday,1,1,1,1,1\n"),
     "column 'timestamp': cannot read 'yesterday' (row 3) as a time"),
    ("csv", lambda p: p.write_text("timestamp,open,high,low,close,volume\n2024-01-01,1,1,1,1,1\n1704153600,1,1,1,1,1\n"),
     "mixes epoch numbers and other text"),
    ("csv", lambda p: p.write_text("1700000000000,1,x,1,1,1,1700000059999,0,0,0,0,0\n"),
     "column 'high': 'x' (row 1) is not a number"),
])
def test_wrong_types(tmp_path: Path, kind: str, write: Callable[[Path], None], expect: str):
    path = tmp_path / f"BTCUSDT-1m.{kind}"
    write(path)
    _refused([path], path.name, expect)


@pytest.mark.parametrize("kind", KINDS)
def test_same_file_twice(files: dict[str, Path], kind: str):
    path = files[kind]
    _refused([path, path], "market data file given twice", str(path), "give each file once")
    (path.parent / "again").mkdir()
    other = path.parent / "again" / ".." / path.name  # another spelling of the same path
    _refused([path, other], "given twice")
    link = path.parent / ("link-" + path.name)
    os.link(path, link)  # a hard link: a different name, the same file
    _refused([path, link], "given twice", f"the same file as {path}")


def test_zip_must_hold_one_csv(tmp_path: Path):
    path = tmp_path / "BTCUSDT-1m-2021-01.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(SPOT_CSV, "a.csv")
        zf.write(FUT_CSV, "b.csv")
    _refused([path], "BTCUSDT-1m-2021-01.zip: a zip must hold exactly one CSV file, this one holds 2 (a.csv, b.csv)")
    not_zip = tmp_path / "BTCUSDT-1m-2021-02.zip"
    not_zip.write_bytes(b"PK not really a zip file")
    _refused([not_zip], "BTCUSDT-1m-2021-02.zip: cannot read the zip")


def test_not_the_format_its_name_says(tmp_path: Path):
    feather = tmp_path / "BTC_USDT-1m.feather"
    feather.write_text("date,open,high,low,close,volume\n")
    _refused([feather], "BTC_USDT-1m.feather: not a readable feather (Arrow IPC) file", "expected freqtrade bars")
    parquet = tmp_path / "btcusdt-trades.parquet"
    parquet.write_bytes(b"PAR1 nothing")
    _refused([parquet], "btcusdt-trades.parquet: not a readable parquet file", "expected trades")
    csv = tmp_path / "BTCUSDT-1m.csv"
    csv.write_bytes(b"\xff\xfe\x00binary")
    _refused([csv], "BTCUSDT-1m.csv: not a text CSV")
    with pytest.raises(DataFileError, match=r"unknown market data format '\.txt'"):
        detect_format(_touch(tmp_path / "x.txt"))


def _touch(path: Path) -> Path:
    path.write_text("x")
    return path


def test_rows_back_in_time_in_parquet(tmp_path: Path, data_dir: Path):
    table = pq.read_table(data_dir / "btcusdt-trades.parquet")
    path = tmp_path / "btcusdt-trades.parquet"
    pq.write_table(pa.concat_tables([table.slice(10, 5), table.slice(0, 5)]), path)
    _refused([path], "btcusdt-trades.parquet: row 6 goes back in time")


def test_capture_errors_are_data_file_errors(tmp_path: Path):
    bad = tmp_path / "spot_btcusdt_bad.gz"
    bad.write_bytes(b"not gzip at all")
    _refused([bad], "spot_btcusdt_bad.gz: unknown market data format, cannot read it as gzip text")
    with pytest.raises(DataFileError, match=r"spot_btcusdt_bad\.gz: cannot read the capture"):
        list(iter_binance_capture(bad))
    text = tmp_path / "spot_btcusdt_text.gz"
    with gzip.open(text, "wt") as fh:
        fh.write(json.dumps({"a": 1}) + "\n")
    _refused([text], "spot_btcusdt_text.gz: unknown market data format, expected a Binance capture")


def test_directory(tmp_path: Path):
    _refused([tmp_path], "is a directory, expected a file")
