"""Log helpers: progress output, node log timestamps, ANSI stripping."""

from __future__ import annotations

import datetime as _dt
import re
import time
from dataclasses import dataclass

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z")


def log(msg: str) -> None:
    """Progress output (shown with pytest -s, and in failure reports)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def parse_log_ts(line: str) -> float | None:
    """Epoch seconds of a tracing log line ("2026-11-22T06:39:52.512086Z ...")."""
    m = _TS.match(line)
    if not m:
        return None
    s = m.group(1)
    if "." in s:
        head, frac = s.split(".")
        s = f"{head}.{frac[:6]}"
        fmt = "%Y-%m-%dT%H:%M:%S.%f"
    else:
        fmt = "%Y-%m-%dT%H:%M:%S"
    return _dt.datetime.strptime(s, fmt).replace(tzinfo=_dt.timezone.utc).timestamp()


@dataclass
class LogHit:
    line: str
    ts: float | None  # the node's own timestamp (epoch seconds)
    seen: float  # time.time() when the harness saw it
