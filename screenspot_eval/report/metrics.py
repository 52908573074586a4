"""Accuracy breakdowns of per-sample records: overall, leaderboard (group x ui_type), and slices.

Input: a DataFrame with one row per sample and the columns of :data:`RECORD_COLUMNS`; ``outcome``
is one of ``correct / wrong / wrong_format / failed``. Every outcome stays in the denominator
(accuracy = correct / n), as in the official script. An empty slice reports n = 0 and
accuracy 0.0, never NaN. A missing slice value (e.g. no ``group``) becomes its own slice,
``(missing)``, rather than disappearing.

Records of the other layouts (:mod:`screenspot_eval.data.layouts`) are sliced by their layout's
report slices (:func:`layout_metrics_table`): ScreenSpot-v2 by platform x ui_type, OSWorld-G by
category (an item counts in each of its categories) and target kind, with accuracy with and
without the refusal items.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import pandas as pd

from screenspot_eval.data.layouts import UNCLASSIFIED, Layout, get_layout, slice_values
from screenspot_eval.data.sample import DEFAULT_LAYOUT, TARGET_KINDS, UI_TYPES
from screenspot_eval.protocol.scoring import OUTCOMES

RECORD_COLUMNS: tuple[str, ...] = (
    "id",
    "application",
    "platform",
    "group",
    "ui_type",
    "language",
    "outcome",
)
SLICE_COLUMNS: tuple[str, ...] = ("application", "platform", "group", "ui_type", "language")
MISSING_VALUE = "(missing)"
AVG = "avg"
ALL_GROUPS = "all"
COUNT_COLUMNS: tuple[str, ...] = (
    "n",
    "correct",
    "wrong",
    "wrong_format",
    "failed",
    "accuracy",
    "wrong_format_rate",
)
METRICS_COLUMNS: tuple[str, ...] = (
    "slice",
    "value",
    "n",
    "correct",
    "accuracy",
    "wrong_format",
    "wrong_format_rate",
    "failed",
)


@dataclass(frozen=True)
class SliceCounts:
    """Outcome counts of one slice; rates are 0.0 for an empty slice."""

    n: int
    correct: int
    wrong: int
    wrong_format: int
    failed: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def wrong_format_rate(self) -> float:
        return self.wrong_format / self.n if self.n else 0.0

    def as_row(self) -> dict[str, int | float]:
        return {
            **asdict(self),
            "accuracy": self.accuracy,
            "wrong_format_rate": self.wrong_format_rate,
        }


def count_outcomes(outcomes: Iterable[str]) -> SliceCounts:
    """Count outcome strings (all must be known outcomes)."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for outcome in outcomes:
        counts[outcome] += 1
    return SliceCounts(n=sum(counts.values()), **counts)


def validate_records(df: pd.DataFrame) -> pd.DataFrame:
    """Check columns and outcomes; return a copy with missing slice values made explicit."""
    missing = [c for c in RECORD_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"records lack columns {missing}")
    unknown = sorted(set(df["outcome"].astype(str)) - set(OUTCOMES))
    if unknown:
        raise ValueError(f"unknown outcomes {unknown}; expected {list(OUTCOMES)}")
    out = df.copy()
    for column in SLICE_COLUMNS:
        values = out[column].astype(object)
        out[column] = values.where(values.notna(), MISSING_VALUE).astype(str)
    out["outcome"] = out["outcome"].astype(str)
    return out


def _table(
    df: pd.DataFrame, by: Sequence[str], values: Mapping[str, Sequence[str]] | None = None
) -> pd.DataFrame:
    """One row per combination of ``by`` values (observed, or the full product of ``values``)."""
    levels = [list(values[c]) if values and c in values else _sorted_values(df[c]) for c in by]
    grouped: dict[tuple[str, ...], pd.Series] = {}
    if len(df):
        for key, frame in df.groupby(list(by), sort=False):
            grouped[key if isinstance(key, tuple) else (key,)] = frame["outcome"]
    rows = [
        {**dict(zip(by, combo, strict=True)), **count_outcomes(grouped.get(combo, ())).as_row()}
        for combo in itertools.product(*levels)
    ]
    return pd.DataFrame(rows, columns=[*by, *COUNT_COLUMNS])


def overall_table(df: pd.DataFrame) -> pd.DataFrame:
    """A single row of counts over all records."""
    records = validate_records(df)
    return pd.DataFrame([count_outcomes(records["outcome"]).as_row()], columns=list(COUNT_COLUMNS))


def _group_ui_blocks(records: pd.DataFrame) -> list[pd.DataFrame]:
    """Per group (sorted), then one for all samples: the ui_type rows and a last ``avg`` row.

    Blocks are kept apart by position, not by label, so a dataset group that is itself
    called ``all`` is neither merged with the total nor replaced by it.
    """
    ui_types = [*UI_TYPES, *_extra_ui(records)]
    groups = [(g, records[records["group"] == g]) for g in _sorted_values(records["group"])]
    blocks = []
    for group, frame in [*groups, (ALL_GROUPS, records)]:
        frame = frame.assign(group=group)
        by_ui = _table(frame, ["group", "ui_type"], {"group": [group], "ui_type": ui_types})
        avg = _table(frame, ["group"], {"group": [group]}).assign(ui_type=AVG)
        block = pd.concat([by_ui, avg], ignore_index=True)
        blocks.append(block[["group", "ui_type", *COUNT_COLUMNS]])
    return blocks


def group_ui_table(df: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard table in long form: per group (then ``all``), text / icon / avg rows.

    ``avg`` is over all of the group's samples (the official ``action_acc``, a micro average);
    text and icon rows exist for every group even when empty.
    """
    return pd.concat(_group_ui_blocks(validate_records(df)), ignore_index=True)


def leaderboard_table(df: pd.DataFrame) -> pd.DataFrame:
    """Wide leaderboard: one row per group (then ``all``), accuracy and n for text/icon/avg."""
    rows = []
    for block in _group_ui_blocks(validate_records(df)):
        avg = block.iloc[-1]
        by_ui = block.iloc[:-1].set_index("ui_type")
        row: dict[str, object] = {"group": avg["group"]}
        for ui in UI_TYPES:
            row[f"{ui}_accuracy"] = float(by_ui.loc[ui, "accuracy"])
            row[f"{ui}_n"] = int(by_ui.loc[ui, "n"])
        row[f"{AVG}_accuracy"] = float(avg["accuracy"])
        row[f"{AVG}_n"] = int(avg["n"])
        rows.append(row)
    columns = [f"{ui}_{stat}" for ui in (*UI_TYPES, AVG) for stat in ("accuracy", "n")]
    return pd.DataFrame(rows, columns=["group", *columns])


def slice_table(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """Counts per value of one slice column (application, platform, language, ...)."""
    return _table(validate_records(df), [column])


def metrics_table(df: pd.DataFrame) -> pd.DataFrame:
    """All slices in one table for ``metrics.csv``: overall, group, ui_type, group/ui_type,
    application, platform, language; one row per slice value."""
    records = validate_records(df)
    parts = [overall_table(records).assign(slice="overall", value="all")]
    parts.append(_named(_table(records, ["group"]), "group"))
    ui = _table(records, ["ui_type"], {"ui_type": [*UI_TYPES, *_extra_ui(records)]})
    parts.append(_named(ui, "ui_type"))
    per_group = [block.iloc[:-1] for block in _group_ui_blocks(records)[:-1]]  # no avg, no total
    long = (
        pd.concat(per_group, ignore_index=True)
        if per_group
        else pd.DataFrame(columns=["group", "ui_type", *COUNT_COLUMNS])
    )
    parts.append(long.assign(slice="group/ui_type", value=long["group"] + "/" + long["ui_type"]))
    for column in ("application", "platform", "language"):
        parts.append(_named(_table(records, [column]), column))
    table = pd.concat(parts, ignore_index=True)
    return table[list(METRICS_COLUMNS)]


def _sorted_values(values: pd.Series) -> list[str]:
    """Distinct values, sorted, with the missing-value slice last."""
    return sorted(set(values), key=lambda v: (v == MISSING_VALUE, v))


def _extra_ui(records: pd.DataFrame) -> list[str]:
    return sorted(set(records["ui_type"]) - set(UI_TYPES))


def _named(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Label a one-column slice table for ``metrics_table``."""
    return table.assign(slice=column, value=table[column])


# --- layouts beside ScreenSpot-Pro (screenspot_eval.data.layouts) ------------------------------

OVERALL_WITHOUT_REFUSAL = "overall_without_refusal"


def records_layout(df: pd.DataFrame) -> str:
    """The one dataset layout of the records (records older than schema 3: ScreenSpot-Pro)."""
    if "layout" not in df.columns or not len(df):
        return DEFAULT_LAYOUT
    layouts = sorted({str(v) for v in df["layout"] if isinstance(v, str)} or {DEFAULT_LAYOUT})
    if len(layouts) > 1:
        raise ValueError(
            f"records of several dataset layouts ({layouts}) cannot be sliced together"
        )
    return layouts[0]


def _value_order(layout: Layout) -> list[str]:
    return [*layout.categories, UNCLASSIFIED, *TARGET_KINDS, *UI_TYPES]


def layout_slice_table(
    df: pd.DataFrame, column: str, layout: str | Layout | None = None
) -> pd.DataFrame:
    """Counts per value of slice ``column`` of ``layout`` (``category`` counts an item in each
    of its categories; ``a/b`` crosses two columns), one row per value that occurs."""
    chosen = get_layout(layout or records_layout(df))
    validate_records(df)
    rows = df.to_dict("records")
    outcomes: dict[str, list[str]] = {}
    for row in rows:
        for value in slice_values(row, column):
            outcomes.setdefault(value, []).append(str(row["outcome"]))
    order = _value_order(chosen)
    values = sorted(
        outcomes,
        key=lambda v: (v == MISSING_VALUE, order.index(v) if v in order else len(order), v),
    )
    table = [{"value": v, **count_outcomes(outcomes[v]).as_row()} for v in values]
    return pd.DataFrame(table, columns=["value", *COUNT_COLUMNS])


def without_refusal(df: pd.DataFrame) -> pd.DataFrame:
    """The records whose target is not a refusal (all of them for records without targets)."""
    if "target" not in df.columns:
        return df
    return df[df["target"].astype(object).fillna("box") != "refusal"]


def layout_metrics_table(df: pd.DataFrame, layout: str | Layout | None = None) -> pd.DataFrame:
    """``metrics.csv`` for the records' layout: ScreenSpot-Pro's :func:`metrics_table`
    unchanged, else overall (and, with refusal items, overall without them), then one row per
    value of each of the layout's report slices."""
    chosen = get_layout(layout or records_layout(df))
    if chosen.name == DEFAULT_LAYOUT:
        return metrics_table(df)
    parts = [overall_table(df).assign(slice="overall", value="all")]
    if chosen.has_refusal:
        kept = without_refusal(df)
        parts.append(overall_table(kept).assign(slice=OVERALL_WITHOUT_REFUSAL, value="all"))
    for column in chosen.report_slices:
        parts.append(layout_slice_table(df, column, chosen).assign(slice=column))
    table = pd.concat(parts, ignore_index=True)
    return table[list(METRICS_COLUMNS)]
