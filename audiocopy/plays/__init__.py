"""Plays kept: the log of every play the stream decision reported, and its exports.

Place in the pipeline: the last stage before the web pages and the CLI.
``store`` keeps plays in SQLite (WAL; readers never block the writer);
``export`` writes them as CSV and JSON.
"""
