"""Every piece of process-wide mutable state of the command pipeline, in one place.

A command runs once per process (``dendsn train ...``), but tests call `dendsn_cli.cli.main` several
times in one process: `reset` starts each command afresh (the directory locks stay: a lock is held for
the life of the process).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Optional


@dataclass
class ProcessState:
    failed_jobs: list[str] = field(default_factory=list)  # "<job dir>: <error>" of a sweep's failed jobs
    sweep_overrides: list[str] = field(default_factory=list)  # the sweep's own overrides (table of a stopped sweep)
    created_dir: Optional[Path] = None  # the run dir this command made (removed again if the run is refused)
    created_top: Optional[Path] = None  # ... and the topmost of the directories it made for it (outputs/<date>/)
    locks: dict[str, IO] = field(default_factory=dict)  # real path -> open lock file, held until exit

    def reset(self) -> None:
        """A new command: no failed jobs, no sweep, no directory made yet."""
        self.failed_jobs.clear()
        self.sweep_overrides.clear()
        self.created_dir = self.created_top = None


STATE = ProcessState()
