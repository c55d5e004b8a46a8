"""Files of older releases that the store's tables replace, and how an imported one is set aside.

Place in the pipeline: used by ``plays.monitor_rows``, ``plays.token_rows``
and ``plays.outbox_rows`` when a server starts on a state folder written by a
release that kept monitors, stream tokens and the webhook outbox in files of
their own (``monitors.json``, ``source-tokens.json``, ``webhooks.sqlite``).

Each file is imported in one statement (rows already in the store, by id or
name, are kept and not duplicated: importing twice changes nothing) and then
renamed ``<name>.imported``, never deleted: no data is lost, the next start
does not import it again, and an admin can still read it.
"""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

#: Suffix given to a legacy file once its rows are in the store.
IMPORTED_SUFFIX = ".imported"


def mark_imported(path: Path, rows: int) -> Path | None:
    """Rename ``path`` to ``<name>.imported`` (numbered when that exists); returns the new path.

    None when the file is gone already: another worker sharing the state
    folder imported and renamed it first (its rows are in the store either way).
    """
    target = path.with_name(path.name + IMPORTED_SUFFIX)
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{IMPORTED_SUFFIX}.{n}")
    try:
        path.rename(target)
    except FileNotFoundError:
        return None
    log.warning("imported %s (%d row(s)) into the store; the file is now %s", path, rows, target)
    return target
