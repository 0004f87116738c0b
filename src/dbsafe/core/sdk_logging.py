"""How a resident process (the agent, `dbsafe serve`) logs: its own events at INFO, as text
lines or, with ``--json``, one JSON object a line; the object-store SDKs, which log every
HTTP request at INFO (azure) or DEBUG (botocore), only from WARNING."""

from __future__ import annotations

import json
import logging

SDK_LOGGERS = ("azure", "botocore", "boto3", "urllib3", "s3transfer")
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"  # every instant dbsafe prints carries its zone


class JsonLines(logging.Formatter):
    """``{"time", "logger", "level", "message"[, "traceback"]}`` per line (a format string
    cannot quote the message as JSON; python-json-logger would be a dependency for this)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record), "logger": record.name,
                "level": record.levelname, "message": record.getMessage()}
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def resident_logging(json_lines: bool = False, text_format: str = TEXT_FORMAT) -> None:
    """Log to stderr at INFO (a no-op when logging is set up already)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines(datefmt=TIME_FORMAT) if json_lines else
                         logging.Formatter(text_format, datefmt=TIME_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    quiet_sdk_loggers()


def quiet_sdk_loggers() -> None:
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
