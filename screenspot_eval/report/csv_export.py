"""The one CSV writer: every ``.csv`` the tool writes goes through :func:`write_csv`.

A model's answer, an error message or a dataset name can hold anything: a bare carriage
return, ``\\r\\n``, newlines, quotes, commas, control characters, very long text, non-ASCII.
Written with pandas' defaults, a bare ``\\r`` is left unquoted and readers split the row in
two (phantom rows). So every CSV here is written the same way:

- every non-numeric field is quoted (``csv.QUOTE_NONNUMERIC``; numbers stay bare), rows end
  with ``\\n``, UTF-8 without a byte-order mark, no index column;
- each text cell is passed through :func:`csv_text`, the documented CSV form of a text:

  1. every character that UTF-8 can encode is kept as is: quotes, commas, tab, ``\\n``,
     ``\\r``, NUL and the other control characters, non-ASCII, backslashes. Quoted, they read
     back exactly with pandas >= 3.1 and with the ``csv`` module (Python >= 3.11). Older
     pandas (2.x, 3.0) still reads one row per record but cuts a field at an embedded NUL
     (pandas PR #66415 / #66511); ``predictions.jsonl`` has the full text;
  2. a lone surrogate (U+D800-U+DFFF, which UTF-8 cannot encode; it can come from a JSON
     ``"\\ud800"`` escape) becomes the six characters ``\\uXXXX``;
  3. a cell longer than :data:`CSV_CELL_LIMIT` characters (the default field limit of
     Python's ``csv`` module) is cut to exactly that length, ending with a marker that
     says how many characters were cut (:func:`cut_marker`).

  A missing value and an empty text both give an empty cell. This applies to CSV only:
  ``predictions.jsonl`` and the JSON exports keep every text exactly (JSON escapes it).

Read the files back with ``pd.read_csv(path, keep_default_na=False, dtype=str)`` (otherwise
pandas turns texts such as ``NA`` into NaN) or ``csv.reader(open(path, newline=""))``: both
give exactly one row per record.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import pandas as pd

#: The longest cell written, in characters: ``csv.field_size_limit()``'s default.
CSV_CELL_LIMIT = 131_072
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def cut_marker(n_cut: int) -> str:
    """What ends a cell cut to :data:`CSV_CELL_LIMIT`; ``n_cut`` characters were left out."""
    return f" [... {n_cut} more characters cut; full text in predictions.jsonl]"


def csv_text(text: str) -> str:
    """The CSV form of one text cell (see the module docstring for the rules)."""
    out = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    if len(out) <= CSV_CELL_LIMIT:
        return out
    keep = CSV_CELL_LIMIT - len(cut_marker(len(out)))
    return out[:keep] + cut_marker(len(out) - keep)


def _cell(value: Any) -> Any:
    return csv_text(value) if isinstance(value, str) else value


def csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every text cell (and column name) in its CSV form."""
    out = frame.copy()
    for column in out.columns:
        if not (
            pd.api.types.is_numeric_dtype(out[column]) or pd.api.types.is_bool_dtype(out[column])
        ):
            out[column] = out[column].astype(object).map(_cell)
    out.columns = [_cell(str(c)) for c in out.columns]
    return out


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as a CSV that reads back row for row (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    csv_frame(frame).to_csv(
        path,
        index=False,
        quoting=csv.QUOTE_NONNUMERIC,
        lineterminator="\n",
        encoding="utf-8",
    )
    return path
