"""What the engines' command-line tools share: the expectation flags (``--num-classes``, ``--variant``,
``--preset``) and one-line errors.

Each tool's flags are fields of a small frozen options dataclass declared with ``model/settings.py``'s
``setting`` (``ExportOptions``, ``BuildOptions``): the parser and the range checks are generated from
them and a bad value is the one ``ConfigError`` sentence (exit 2 through ``run_command``). Progress
lines go to the module loggers (``model/logs.py`` shows them as ``[clipmg-export] ...``).
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional

from clipmg.model import settings
from clipmg.model.errors import one_line  # noqa: F401 - one implementation (model/errors.py), importable from here
from clipmg.model.settings import Range, setting

from .base import EngineError

EXPECT = "what the model must be (refused otherwise, before any work)"  # the argument group of Expect's flags


@dataclass(frozen=True)
class Expect:
    """What a checkpoint or export must be (``check_expectations``): the flags clipmg-export and
    clipmg-build share; each one not given checks nothing."""

    num_classes: Optional[int] = setting(None, "refuse a model with another class count", Range(2), group=EXPECT)
    variant: Optional[str] = setting(None, "refuse a model of another variant", group=EXPECT)
    preset: Optional[str] = setting(None, "refuse a model of another preset", group=EXPECT)

    def __post_init__(self) -> None:
        settings.check_fields(self, terse=True)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Expect":
        return cls(**settings.values_from_args(cls, args))

    def as_dict(self) -> Dict[str, Any]:
        """The keywords of ``check_expectations``: the expectations given."""
        return {k: v for k, v in vars(self).items() if v is not None}


@contextlib.contextmanager
def file_errors() -> Iterator[None]:
    """A file the user named (or an output folder) that cannot be read or written is the user's to fix:
    ``OSError`` with a file name becomes one ``EngineError`` sentence naming the file."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            raise
        raise EngineError(f"{e.filename}: {e.strerror or one_line(e)}") from e
