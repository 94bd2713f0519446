"""Generate ``mexc_pb2.py`` from ``mexc.proto`` (``make proto``; needs the dev dependency grpcio-tools).

``python -m grpc_tools.protoc -I src --python_out=... src/claire/adapters/mexc/mexc.proto``, with a
``# ruff: noqa`` first line added (generated code is not linted). A test checks that the committed
file equals a fresh generation.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[2]  # .../src
PROTO = HERE / "mexc.proto"
TARGET = HERE / "mexc_pb2.py"
HEADER = "# ruff: noqa\n"


def generate() -> str:
    """The text of ``mexc_pb2.py`` as the pinned compiler makes it now."""
    rel = PROTO.relative_to(SRC)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{SRC}", f"--python_out={tmp}", str(rel)],  # noqa: S603 - our own interpreter running protoc on our own .proto, no shell
                       check=True, cwd=SRC)
        text = (Path(tmp) / rel.with_name("mexc_pb2.py")).read_text()
    return HEADER + text


def main() -> None:
    TARGET.write_text(generate())
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
