"""Decode cost per message for each wire contract, against ``json.loads`` on the same bytes.

For every example beside each contract's JSON Schema (``schemas/*.example*.json``, re-encoded
compactly, as producers send them), the time of:

- ``codec``: ``schemas.codec.decode(Contract, raw)``, i.e. parse + validate + build the
  typed record (what the workers and the fleet pay);
- ``json.loads``: the standard library parsing the same bytes into dicts, no validation;
- ``invalid``: the codec on the same message with its last field's value made invalid,
  i.e. the cost of producing a ``DecodeError`` (what a dead letter costs to detect).

Each figure is the median over ``--repeats`` runs of ``--number`` decodes, in ns per
message.

Then batches, in records per CPU-second (``time.process_time``, median of ``--rounds``),
for the three record contracts, all in one run: ``--batch`` varied records as
single-record messages (``decode``, and ``decode_batch`` as the worker will call it), and as
one batch message in the two layouts weighed for the batch contracts:

- ``columnar``: ``{"schema_version", owner, field: [value per record], ...}`` (the
  contract), read by ``schemas.codec.decode_batch``: one typed decode of the columns and
  the records built from them; on a bad value, each column that does not decode as a
  whole is decoded value by value to find the bad records;
- ``list``: ``{"schema_version", owner, "records": [record, ...]}``, each record a whole
  single-record message, read by ``ListOfRecords`` below: one typed decode of the records;
  on a bad record, each record decoded alone.

Each is timed with every record valid, and with one record in a hundred bad (a timestamp
that is a string), where the outcomes must be the same records and the same errors at the
same indices in every layout. Run::

    .venv/bin/python -m tests.benchmarks.bench_decode
    .venv/bin/python -m pytest tests/benchmarks/bench_decode.py -s
"""

from __future__ import annotations

import argparse
import json
import operator
import statistics
import time
import timeit
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import msgspec

from schemas.codec import BATCHES, WHOLE_MESSAGE, DecodeError, decode, decode_batch
from schemas.contracts import CONTRACTS, FeatureWrite, GroundTruth, Name, Prediction, Version
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


RECORD_CONTRACTS: dict[str, type[Prediction | GroundTruth | FeatureWrite]] = {
    "prediction": Prediction,
    "ground_truth": GroundTruth,
    "feature_write": FeatureWrite,
}
# The field each contract's records are told apart by, and made bad in.
_STAMP = {"prediction": "predicted_at", "ground_truth": "label_at", "feature_write": "written_at"}
_BAD_EVERY = 100


class ListOfRecords:
    """The list-of-records layout's reader, the alternative to the contract's columns.

    Gives what ``decode_batch`` gives: one outcome per record, a bad record an error with
    its index. The fast path decodes and validates the records in one pass; a bad record
    sends the message to a second pass that decodes each record alone. Every record is a
    whole single-record message, so a record whose owner is not the batch's is bad too.
    """

    def __init__(self, contract: type[Any]) -> None:
        self.contract = contract
        self.owner = BATCHES[contract].owner
        header: list[Any] = [("schema_version", Version), (self.owner, Name)]

        def envelope(name: str, record: Any) -> msgspec.json.Decoder[Any]:
            records = ("records", Annotated[list[record], msgspec.Meta(min_length=1)])
            return msgspec.json.Decoder(msgspec.defstruct(name, [*header, records]))

        self.typed = envelope("Records", contract)
        self.loose = envelope("RawRecords", msgspec.Raw)

    def encode(self, records: list[dict[str, Any]]) -> bytes:
        header = {"schema_version": 1, self.owner: records[0][self.owner]}
        return json.dumps({**header, "records": records}, separators=(",", ":")).encode()

    def decode(self, raw: bytes) -> list[Any]:
        owner_of = operator.attrgetter(self.owner)
        try:
            batch = self.typed.decode(raw)
        except msgspec.ValidationError:
            pass
        else:
            if set(map(owner_of, batch.records)) == {owner_of(batch)}:
                return list(batch.records)
        try:
            batch = self.loose.decode(raw)
        except msgspec.ValidationError as error:
            return [DecodeError(WHOLE_MESSAGE, str(error))]
        owner = owner_of(batch)
        outcomes = []
        for index, part in enumerate(batch.records):
            outcome = decode(self.contract, part)
            if isinstance(outcome, DecodeError):
                outcome = msgspec.structs.replace(outcome, index=index)
            elif owner_of(outcome) != owner:
                outcome = DecodeError(self.owner, f"not the batch's {self.owner}", index)
            outcomes.append(outcome)
        return outcomes


def _batch_records(contract: str, n: int) -> list[dict[str, Any]]:
    """``n`` records of one owner from the contract's examples, every hundredth bad."""
    found = [json.loads(raw) for raw in examples(contract).values()]
    owner = BATCHES[RECORD_CONTRACTS[contract]].owner
    stamp = _STAMP[contract]
    return [
        {
            **found[i % len(found)],
            owner: "owner-1",
            stamp: 1_795_000_000_000 + i if i % _BAD_EVERY else "late",
        }
        for i in range(n)
    ]


def _columnar(contract: str, records: list[dict[str, Any]]) -> bytes:
    """``records`` as the contract's batch message: a column per field."""
    spec = BATCHES[RECORD_CONTRACTS[contract]]
    columns = {name: [record.get(name) for record in records] for name in spec.columns}
    header = {"schema_version": 1, spec.owner: records[0][spec.owner]}
    return json.dumps({**header, **columns}, separators=(",", ":")).encode()


# Calls per timed round: about 10 ms of CPU for 500 predictions, well above the clock's grain.
_CALLS_PER_ROUND = 10


def _records_per_cpu_second(call: Callable[[], object], records: int) -> float:
    started = time.process_time()
    for _ in range(_CALLS_PER_ROUND):
        call()
    return _CALLS_PER_ROUND * records / (time.process_time() - started)


def _layouts(
    contract: str, sent: list[dict[str, Any]]
) -> dict[str, tuple[Callable[[], list[Any]], int]]:
    """Each way to read ``sent``: the call that decodes every record, and its bytes."""
    kind = RECORD_CONTRACTS[contract]
    singles = [json.dumps(record, separators=(",", ":")).encode() for record in sent]
    size = sum(map(len, singles))
    as_columns = _columnar(contract, sent)
    listed = ListOfRecords(kind)
    as_list = listed.encode(sent)
    return {
        "single messages, decode": (lambda: [decode(kind, raw) for raw in singles], size),
        "single messages, decode_batch": (
            lambda: [outcome for raw in singles for outcome in decode_batch(kind, raw)],
            size,
        ),
        f"columnar batch of {len(sent)}": (
            lambda: decode_batch(kind, as_columns),
            len(as_columns),
        ),
        f"list batch of {len(sent)}": (lambda: listed.decode(as_list), len(as_list)),
    }


def run_batches(batch: int, rounds: int) -> list[dict[str, Any]]:
    rows = []
    for contract in RECORD_CONTRACTS:
        records = _batch_records(contract, batch)
        for quality in ("valid", "1% bad"):
            sent = [r for r in records if quality == "1% bad" or r[_STAMP[contract]] != "late"]
            layouts = _layouts(contract, sent)
            expected = layouts["single messages, decode"][0]()
            for name, (call, _) in layouts.items():
                # The same records, and errors in the same fields at the same indices.
                got = call()
                assert len(got) == len(expected), name
                for outcome, want in zip(got, expected, strict=True):
                    if isinstance(want, DecodeError):
                        assert isinstance(outcome, DecodeError), (name, outcome)
                        assert outcome.field == want.field, (name, outcome)
                    else:
                        assert outcome == want, name
            # Round-robin, so that a busy spell of the machine hits every layout alike.
            rates: dict[str, list[float]] = {name: [] for name in layouts}
            for _ in range(rounds):
                for name, (call, _) in layouts.items():
                    rates[name].append(_records_per_cpu_second(call, len(sent)))
            for name, (_, size) in layouts.items():
                rows.append(
                    {
                        "contract": contract,
                        "records": quality,
                        "layout": name,
                        "records_per_s": statistics.median(rates[name]),
                        "bytes_per_record": size / len(sent),
                    }
                )
    return rows


def report_batches(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'contract':14} {'records':8} {'layout':32} {'records/CPU-s':>13} {'bytes/record':>12}"
    ]
    for row in rows:
        lines.append(
            f"{row['contract']:14} {row['records']:8} {row['layout']:32} "
            f"{row['records_per_s']:13,.0f} {row['bytes_per_record']:12.0f}"
        )
    return "\n".join(lines)


def test_bench_decode() -> None:
    rows = run(number=2_000, repeats=5)
    print("\n" + report(rows))
    assert len(rows) == len(ALL_EXAMPLES)
    batches = run_batches(batch=500, rounds=3)
    print(report_batches(batches))
    assert len(batches) == 3 * 2 * 4


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=500, help="records per batch message")
    parser.add_argument("--rounds", type=int, default=21, help="rounds of the batch figures")
    args = parser.parse_args(argv)
    print(report(run(args.number, args.repeats)))
    print()
    print(report_batches(run_batches(args.batch, args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
