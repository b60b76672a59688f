"""Reader: raw `.jsonl.gz` files to typed Parquet, bad lines skipped and counted by reason.

One rule decides each line, whatever lines share its block: a line is kept when it is UTF-8 and
pyarrow's JSON reader takes it as one object whose fields that slip-data reads have the schema's
types (strictly: a list or a number where a string belongs is an error, not its text), with finite
floats and ids that are not blank; fields slip-data does not read are not judged. The reader takes
a whole 16 MiB block at once. A block it refuses first loses the lines that Python shows it refuses
too, then is halved until each remaining bad line stands alone, which gets the verdict it gets
alone. Python's json also names the reason of each skipped line.
"""

import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from slip_data.atomic import atomic_path
from slip_data.gzipstream import TruncatedGzipError, inflate

BLOCK_BYTES = 16 << 20
CHUNK_BYTES = 1 << 20  # the reader parses a block's chunks in parallel; a line must fit in one
MAX_EXAMPLES = 5
NEWLINE = b"\n"
BLANK = b" \t\r"  # JSON whitespace besides the newline: a line of only these is no record
BOM = b"\xef\xbb\xbf"
INT64 = range(-(1 << 63), 1 << 63)
# RE2 patterns. The reader takes a stream of values, and an object or a null is a row: a line
# holds more than one row only where, outside strings, `}` is followed by `{` or `null`.
TWO_ROWS = r"\}[ \t\r]*[{n]"
ODD_LINE = r"\n[ \t\r]*[^{ \t\r]"  # a line that does not open an object (a blank one, too)
ODD_START = re.compile(rb"[ \t\r]*[^{ \t\r]")  # the same, for the first line

IMAGE = pa.struct([("large", pa.string()), ("variant", pa.string()), ("hi_res", pa.string())])
TEXTS = pa.list_(pa.string())
SCHEMAS = {  # the fields slip-data reads; any others (an image's thumb, price, ...) are ignored
    "meta": pa.schema(
        [
            ("parent_asin", pa.string()),
            ("main_category", pa.string()),
            ("title", pa.string()),
            ("store", pa.string()),
            ("features", TEXTS),
            ("description", TEXTS),
            ("categories", TEXTS),
            ("images", pa.list_(IMAGE)),
        ]
    ),
    "review": pa.schema(
        [
            ("parent_asin", pa.string()),
            ("user_id", pa.string()),
            ("rating", pa.float64()),
            ("title", pa.string()),
            ("text", pa.string()),
            ("timestamp", pa.int64()),
            ("helpful_vote", pa.int64()),
            ("verified_purchase", pa.bool_()),
        ]
    ),
}

# Fields without which a record is useless; other fields may be missing (null).
REQUIRED = {"meta": ("parent_asin",), "review": ("parent_asin", "user_id")}


@dataclass
class ReadReport:
    """What a reader kept and skipped, by reason, with a few `file:line` examples per reason."""

    lines: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(where)

    def as_dict(self) -> dict:
        return {
            "lines": self.lines,
            "kept": self.kept,
            "skipped": dict(sorted(self.skipped.items())),
            "examples": dict(sorted(self.examples.items())),
        }


@dataclass
class _Block:
    """The kind of records a block holds, and its lines skipped so far: (line number, reason)."""

    kind: str
    skips: list[tuple[int, str]] = field(default_factory=list)

    def skip(self, number: int, line: bytes) -> None:
        self.skips.append((number, _reason(line, self.kind)))


class _Refused(ValueError):
    """What Python's json takes and the rule does not (`1e400`, a key given twice): why."""


class _Token(float):
    """A NaN or Infinity token: Python's json writes them, JSON has none."""


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _Refused("number_out_of_range")
    return value


def _unique(pairs: list[tuple[str, object]]) -> dict:
    if len({key for key, _ in pairs}) < len(pairs):
        raise _Refused("duplicate_key")
    return dict(pairs)


def _value_problem(value: object, dtype: pa.DataType, name: str) -> str:
    """Why `value` cannot be the field `name` of type `dtype`, or '' when it can (null can)."""
    if value is None:
        return ""
    if pa.types.is_list(dtype):
        if not isinstance(value, list):
            return f"wrong_type_{name}"
        problems = (_value_problem(item, dtype.value_type, name) for item in value)
        return next(filter(None, problems), "")
    if pa.types.is_struct(dtype):
        if not isinstance(value, dict):
            return f"wrong_type_{name}"
        problems = (_value_problem(value.get(f.name), f.type, name) for f in dtype)
        return next(filter(None, problems), "")
    return _scalar_problem(value, dtype, name)


def _scalar_problem(value: object, dtype: pa.DataType, name: str) -> str:
    if pa.types.is_string(dtype):
        ok = isinstance(value, str)
    elif pa.types.is_boolean(dtype):
        ok = isinstance(value, bool)
    elif isinstance(value, bool) or not isinstance(
        value, int | float
    ):  # a bool is a number to Python
        ok = False
    elif pa.types.is_int64(dtype):
        if not isinstance(value, int):
            return f"wrong_type_{name}"
        return "" if value in INT64 else "number_out_of_range"
    elif isinstance(value, _Token):  # a float field from here on (a JSON int is a float, too)
        return "non_standard_json"
    else:
        huge = value.bit_length() > 1024 if isinstance(value, int) else math.isinf(value)
        return "number_out_of_range" if huge else ""
    return "" if ok else f"wrong_type_{name}"


def _reason(line: bytes, kind: str) -> str:
    """The first problem Python finds in a line the rule skips (the decision is made already)."""
    try:
        text = line.decode()
    except UnicodeDecodeError:
        return "invalid_utf8"
    try:
        record = json.loads(text, parse_constant=_Token, parse_float=_finite)
    except _Refused as exc:
        return str(exc)
    except (ValueError, RecursionError):
        return "malformed_json"
    if not isinstance(record, dict):
        return "not_an_object"
    try:
        json.dumps(record, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return "lone_surrogate"  # an escaped half of a UTF-16 pair (\ud800): it has no UTF-8
    for name in REQUIRED[kind]:
        value = record.get(name)
        if not isinstance(value, str) or not value.strip():
            return f"missing_{name}"
    for f in SCHEMAS[kind]:
        if problem := _value_problem(record.get(f.name), f.type, f.name):
            return problem
    try:
        json.loads(text, object_pairs_hook=_unique)
    except _Refused as exc:
        return str(exc)
    return "malformed_json"  # nothing that Python names: the reader's own refusal


def _refused(line: bytes, kind: str) -> bool:
    """Whether Python shows that the reader refuses `line`, alone or not, which spares halving a
    block down to each of its bad lines: the line is not UTF-8, not JSON even to the reader (which
    differs from Python's json only in taking `Inf` and `-NaN`), or an object whose fields that
    slip-data reads are missing or of the wrong type or range. The rest is the reader's to say."""
    try:
        record = json.loads(line.decode(), parse_constant=_Token)
    except UnicodeDecodeError:
        return True
    except json.JSONDecodeError:
        return b"NaN" not in line and b"Inf" not in line
    except (ValueError, RecursionError):  # an int past Python's 4300 digits, deep nesting
        return False
    if not isinstance(record, dict):
        return True
    if any(not isinstance(record.get(name), str) for name in REQUIRED[kind]):
        return True
    return any(_value_problem(record.get(f.name), f.type, f.name) for f in SCHEMAS[kind])


def _read(data: bytes, kind: str, one_line: bool) -> pa.Table | None:
    """The reader's table of `data`, or None where it refuses it."""
    small = len(data) < CHUNK_BYTES  # threads only cost time on less than a chunk
    try:
        return pj.read_json(
            pa.BufferReader(data),
            read_options=pj.ReadOptions(
                use_threads=not small,
                block_size=max(CHUNK_BYTES, len(data) + 1) if one_line else CHUNK_BYTES,
            ),
            parse_options=pj.ParseOptions(
                explicit_schema=SCHEMAS[kind], unexpected_field_behavior="ignore"
            ),
        )
    except pa.ArrowInvalid:
        return None


def _view(data: bytes) -> pa.Array:
    """`data` as one Arrow binary value, without a copy, for Arrow's fast scans."""
    offsets = pa.array([0, len(data)], pa.int64()).buffers()[1]
    return pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)])


def _has(data: bytes, pattern: str) -> bool:
    """Whether Arrow's RE2 finds `pattern` in `data`: on megabytes, far faster than Python's re."""
    return pc.match_substring_regex(_view(data), pattern)[0].as_py()


def _utf8(data: bytes) -> bool:
    """Whether `data` is UTF-8: the reader does not check the strings it reads."""
    try:
        _view(data).cast(pa.large_string())
    except pa.ArrowInvalid:
        return False
    return True


def _whole(data: bytes, numbers: Sequence[int], block: _Block) -> pa.Table | None:
    """The kept rows of `data` where the reader takes it whole, one object a line; else None."""
    one_line = len(numbers) == 1
    table = _read(data, block.kind, one_line)
    if (
        table is None
        or table.num_rows != len(numbers)
        or not _utf8(data)
        or (not one_line and _has(data, TWO_ROWS))
    ):
        return None
    bad = {
        row
        for mask in _problem_masks(table, block.kind)
        for row in pc.indices_nonzero(mask).to_pylist()
    }
    if not bad:
        return table
    lines = data.split(NEWLINE)
    for row in bad:
        block.skip(numbers[row], lines[row])
    return table.filter(pa.array([row not in bad for row in range(table.num_rows)]))


def _problem_masks(table: pa.Table, kind: str) -> Iterator[pa.ChunkedArray]:
    """Rows the reader took and the rule skips: a float that is not finite (a NaN or Infinity
    token, a number past the float range), a blank id."""
    for f in SCHEMAS[kind]:
        if pa.types.is_floating(f.type):
            yield pc.invert(pc.is_finite(table[f.name]))
    for name in REQUIRED[kind]:
        column = table[name]
        blank = pc.or_(pc.equal(pc.binary_length(column), 0), pc.utf8_is_space(column))
        yield pc.fill_null(blank, True)


def _tables(data: bytes, numbers: Sequence[int], block: _Block) -> Iterator[pa.Table]:
    """The kept rows of `data`, lines numbered `numbers`: read whole where the reader takes it,
    else halved until each bad line stands alone."""
    table = _whole(data, numbers, block)
    if table is not None:
        yield table
    elif len(numbers) == 1:
        block.skip(numbers[0], data)
    else:
        cut = data.rfind(NEWLINE, 0, len(data) // 2) + 1 or data.find(NEWLINE) + 1
        left = data.count(NEWLINE, 0, cut)
        yield from _tables(data[:cut], numbers[:left], block)
        yield from _tables(data[cut:], numbers[left:], block)


def _kept_lines(
    data: bytes, numbers: Sequence[int], block: _Block, *, keep: Callable[[bytes], bool]
) -> tuple[bytes, list[int]]:
    """`data` with only the lines `keep` takes, less a byte-order mark opening them; the others
    are skipped, but for blank ones, which are no records."""
    kept: list[tuple[int, bytes]] = []
    for number, line in zip(numbers, data.split(NEWLINE)[:-1], strict=True):
        line = line.removeprefix(BOM)
        if keep(line):
            kept.append((number, line))
        elif line.strip(BLANK):
            block.skip(number, line)
    return b"".join(line + NEWLINE for _, line in kept), [number for number, _ in kept]


def _block_tables(data: bytes, numbers: Sequence[int], block: _Block) -> list[pa.Table]:
    """A block's kept rows. Only lines that open an object reach the reader (pyarrow 26 crashes on
    a null that starts one of its chunks), less a byte-order mark opening them. A block the reader
    refuses is rid first of the lines that Python shows it refuses, then halved."""
    if ODD_START.match(data) or _has(data, ODD_LINE):
        data, numbers = _kept_lines(data, numbers, block, keep=_opens_object)
    if not numbers:
        return []
    table = _whole(data, numbers, block)
    if table is not None:
        return [table]
    data, numbers = _kept_lines(
        data, numbers, block, keep=lambda line: not _refused(line, block.kind)
    )
    return list(_tables(data, numbers, block)) if numbers else []


def _opens_object(line: bytes) -> bool:
    return line.lstrip(BLANK).startswith(b"{")


def _blocks(path: Path, report: ReadReport) -> Iterator[tuple[int, int, bytes]]:
    """Yield (first line number, line count, block of whole lines), about BLOCK_BYTES each."""
    pending: list[bytes] = []
    size = 0
    line_no = 1
    try:
        for out in inflate(path):
            pending.append(out)
            size += len(out)
            if size >= BLOCK_BYTES:
                data = b"".join(pending)
                cut = data.rfind(NEWLINE) + 1
                if cut:
                    lines = data.count(NEWLINE, 0, cut)
                    yield line_no, lines, data[:cut]
                    line_no += lines
                pending, size = [data[cut:]], len(data) - cut
    except TruncatedGzipError:
        report.skip("truncated_gzip", str(path))
    except (zlib.error, OSError) as exc:
        report.skip("bad_gzip", f"{path}: {exc}")
    data = b"".join(pending)
    if data.strip():
        data = data if data.endswith(NEWLINE) else data + NEWLINE
        yield line_no, data.count(NEWLINE), data


def parse_to_parquet(src: Path, kind: str, dest: Path) -> ReadReport:
    """Stream a meta (`kind='meta'`) or review (`kind='review'`) file into a Parquet file.

    Memory holds one block at a time; `dest` appears only when the whole file was read.
    """
    report = ReadReport()
    with atomic_path(dest) as tmp, pq.ParquetWriter(tmp, SCHEMAS[kind]) as writer:
        for first_line, lines, data in _blocks(Path(src), report):
            block = _Block(kind)
            tables = _block_tables(data, range(first_line, first_line + lines), block)
            kept = sum(table.num_rows for table in tables)
            report.lines += kept + len(block.skips)
            report.kept += kept
            for number, reason in sorted(block.skips):
                report.skip(reason, f"{src}:{number}")
            if kept:
                writer.write_table(pa.concat_tables(tables))
    return report
