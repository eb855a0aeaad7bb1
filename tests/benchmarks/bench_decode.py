"""Decode cost per message for each wire contract, against ``json.loads`` on the same bytes.

For every example beside each contract's JSON Schema (``schemas/*.example*.json``, re-encoded
compactly, as producers send them), the time of:

- ``codec``: ``schemas.codec.decode(Contract, raw)``, i.e. parse + validate + build the
  typed record (what the workers and the fleet pay);
- ``json.loads``: the standard library parsing the same bytes into dicts, no validation;
- ``invalid``: the codec on the same message with its last field's value made invalid,
  i.e. the cost of producing a ``DecodeError`` (what a dead letter costs to detect).

Each figure is the median over ``--repeats`` runs of ``--number`` decodes, in ns per
message. Run::

    .venv/bin/python -m tests.benchmarks.bench_decode
    .venv/bin/python -m pytest tests/benchmarks/bench_decode.py -s
"""

from __future__ import annotations

import argparse
import json
import statistics
import timeit
from collections.abc import Callable, Sequence
from typing import Any

from schemas.codec import DecodeError, decode
from schemas.contracts import CONTRACTS
from tests.schemas.conftest import ALL_EXAMPLES, examples


def _ns_per_call(call: Callable[[], Any], number: int, repeats: int) -> float:
    runs = timeit.repeat(call, number=number, repeat=repeats)
    return statistics.median(runs) / number * 1e9


def _invalid(message: dict[str, Any]) -> bytes:
    last = list(message)[-1]
    return json.dumps({**message, last: [["not", "this"]]}, separators=(",", ":")).encode()


def run(number: int, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for contract, file in ALL_EXAMPLES:
        message = json.loads(examples(contract)[file])
        raw = json.dumps(message, separators=(",", ":")).encode()
        invalid = _invalid(message)
        kind = CONTRACTS[contract]
        assert not isinstance(decode(kind, raw), DecodeError)
        assert isinstance(decode(kind, invalid), DecodeError)
        codec = _ns_per_call(lambda: decode(kind, raw), number, repeats)  # noqa: B023
        loads = _ns_per_call(lambda: json.loads(raw), number, repeats)  # noqa: B023
        error = _ns_per_call(lambda: decode(kind, invalid), number, repeats)  # noqa: B023
        rows.append(
            {
                "example": file,
                "bytes": len(raw),
                "codec_ns": codec,
                "json_loads_ns": loads,
                "ratio": codec / loads,
                "invalid_ns": error,
            }
        )
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'example':40} {'bytes':>5} {'codec ns':>9} {'json.loads ns':>13} "
        f"{'codec/loads':>11} {'invalid ns':>10}"
    ]
    for row in rows:
        lines.append(
            f"{row['example']:40} {row['bytes']:5d} {row['codec_ns']:9.0f} "
            f"{row['json_loads_ns']:13.0f} {row['ratio']:11.2f} {row['invalid_ns']:10.0f}"
        )
    return "\n".join(lines)


def test_bench_decode() -> None:
    rows = run(number=2_000, repeats=5)
    print("\n" + report(rows))
    assert len(rows) == len(ALL_EXAMPLES)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    print(report(run(args.number, args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
