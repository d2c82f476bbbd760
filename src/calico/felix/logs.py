"""Structured logging for calico-felix: one `key=value` line per record.

Enters: the logging settings of a `FelixConfig` (LogSeverityScreen, LogSeverityFile, LogFilePath).
Leaves: handlers on the root logger: stderr at LogSeverityScreen, and the file at LogFilePath (when
set) at LogSeverityFile. Lines look like
    time=2024-05-01T10:00:00.123Z level=info logger=calico.felix.daemon msg="applied batch" events=12
where fields passed through `extra=` are appended as further key=value pairs. `LogSetup.apply()` changes
the levels of a running process (a live FelixConfiguration change).
"""

from __future__ import annotations

import datetime
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from calico.felix.config import FelixConfig

__all__ = ["KeyValueFormatter", "LogSetup", "configure_logging", "level_of"]

_LEVELS = {
    "Trace": logging.DEBUG,
    "Debug": logging.DEBUG,
    "Info": logging.INFO,
    "Warning": logging.WARNING,
    "Error": logging.ERROR,
    "Fatal": logging.CRITICAL,
}
# Attributes every LogRecord has; anything else came from `extra=` and is printed as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def level_of(severity: str) -> int:
    return _LEVELS.get(severity, logging.INFO)


def _quote(value: object) -> str:
    s = str(value)
    if s and not any(c in s for c in ' "=\n\t'):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        parts = [
            f"time={ts.strftime('%Y-%m-%dT%H:%M:%S')}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quote(record.getMessage())}",
        ]
        parts.extend(f"{k}={_quote(v)}" for k, v in record.__dict__.items() if k not in _STANDARD)
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


class LogSetup:
    def __init__(self, screen: logging.Handler, file: logging.Handler | None) -> None:
        self.screen = screen
        self.file = file

    def apply(self, config: FelixConfig) -> None:
        self.screen.setLevel(level_of(config.log_severity_screen))
        if self.file is not None:
            self.file.setLevel(level_of(config.log_severity_file))
        levels = [self.screen.level] + ([self.file.level] if self.file is not None else [])
        logging.getLogger().setLevel(min(levels))

    def close(self) -> None:
        root = logging.getLogger()
        for h in (self.screen, self.file):
            if h is not None:
                root.removeHandler(h)
                h.close()


def configure_logging(config: FelixConfig) -> LogSetup:
    """Install the handlers (replacing the root logger's existing ones)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = KeyValueFormatter()
    screen = logging.StreamHandler(sys.stderr)
    screen.setFormatter(fmt)
    root.addHandler(screen)
    file: logging.Handler | None = None
    if config.log_file_path:
        try:
            file = logging.FileHandler(config.log_file_path)
        except OSError as e:
            logging.getLogger(__name__).error("cannot open LogFilePath %s (%s); logging to stderr only",
                                              config.log_file_path, e)
        else:
            file.setFormatter(fmt)
            root.addHandler(file)
    setup = LogSetup(screen, file)
    setup.apply(config)
    return setup
