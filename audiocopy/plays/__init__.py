"""Plays kept: the log of every play the stream decisions reported, and its exports.

Place in the pipeline: the last stage before the web pages and the CLI.
``record`` is what is kept about a play beyond the decision (status,
provenance) and about a source; ``base`` the store's interface
(``PlayStore``) and the rules and SQL both backends share; ``schema`` the
versioned schema and its migrations, in SQLite's and PostgreSQL's SQL;
``store`` the embedded default (SQLite, WAL: readers never block the
writer; open plays are written as they grow and recovered after a crash);
``postgres`` the same store on a PostgreSQL server; ``factory`` opens one
from a path or a ``postgresql://`` URL; ``export`` writes plays as CSV and
JSON. ``monitor_rows``, ``token_rows`` and ``outbox_rows`` keep the
server's URL monitors, stream tokens and webhook outbox in the same
database, shared by every server worker; ``legacy`` sets aside the files
older releases kept them in once they are imported.
"""
