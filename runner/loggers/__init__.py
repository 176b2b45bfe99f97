"""Loggers: the protocol the training loop talks to (`base`), the journal every run keeps
(`journal`), the console (`console`), and the registry that makes the ones `--logger` names
(`registry`; backends such as the Visdom dashboard and TensorBoard are entries there, imported only
when chosen).
"""

from runner.loggers.base import (
           BaseLogger,
           ClosingLogger,
           FanOut,
           Info,
           Logger,
           NullLogger,
           Pixels,
)
from runner.loggers.journal import EVENTS, FORMAT, JournalError, JsonlLogger, replay

__all__ = ["BaseLogger", "ClosingLogger", "EVENTS", "FORMAT", "FanOut", "Info", "JournalError", "JsonlLogger",
           "Logger", "NullLogger", "Pixels", "replay"]
