"""Local tooling for pinpoint-incremental-analytics: the ``pia`` CLI, emulator, runner and demo."""
