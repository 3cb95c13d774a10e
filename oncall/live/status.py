"""Is live traffic arriving? The console's live marker, read from the receiver's imports.

`oncall receive` writes one import per part (format `otlp-http`), each with its span count and
the time it was finished; so any process reading the incident can tell the rate and the last
arrival without talking to the receiver.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

# The `imports.format` of the parts the receiver writes (live/partwrite.py writes it; read here without
# importing the writer, so the console starts without pyarrow and the load path).
FORMAT = "otlp-http"


RATE_WINDOW_S = 10  # spans/s is averaged over this many seconds
IDLE_AFTER_S = 60  # no part for this long: the marker says idle


@dataclass(frozen=True)
class LiveStatus:
    spans_per_s: float
    last_arrival: dt.datetime | None
    total_spans: int
    idle: bool

    def text(self) -> str:
        """`● live 1,234 spans/s · last 02:41:07Z`, or `live idle since …`, or '' without live data."""
        if self.last_arrival is None:
            return ""
        at = self.last_arrival.astimezone(dt.UTC).strftime("%H:%M:%SZ")
        if self.idle:
            return f"○ live idle since {at}"
        return f"● live {self.spans_per_s:,.0f} spans/s · last {at}"


def live_status(con: Any, now: dt.datetime | None = None) -> LiveStatus:
    now = now or dt.datetime.now(dt.UTC)
    row = con.execute(
        "SELECT sum(spans) FILTER (WHERE finished_at > ?), max(finished_at), sum(spans) FROM imports "
        "WHERE format = ? AND status = 'loaded'", [now - dt.timedelta(seconds=RATE_WINDOW_S), FORMAT]).fetchone()
    recent, last, total = row
    idle = last is None or (now - last).total_seconds() > IDLE_AFTER_S
    return LiveStatus(float(recent or 0) / RATE_WINDOW_S, last, int(total or 0), idle)
