"""Everything a log handler could write for a record: what secret-leak tests search."""

from __future__ import annotations

import logging


def log_texts(records: list[logging.LogRecord]) -> list[str]:
    """Everything a log handler could write for each record."""
    formatter = logging.Formatter()
    out = []
    for record in records:
        parts = [
            record.getMessage(),
            repr(record.args),
            record.exc_text or "",
            record.stack_info or "",
        ]
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
        parts += [repr(v) for k, v in vars(record).items() if k not in ("exc_info", "args")]
        out.append("\n".join(parts))
    return out
