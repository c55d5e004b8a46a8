#!/usr/bin/env python3
"""Launcher for the streaming recognition server: ``python server.py --db DB``.

A thin shell, like ``audiocopy serve``: parse arguments (environment
variables AUDIOCOPY_* fill in what the command line leaves out), validate
them, then hand over to ``audiocopy.web.launch.run``. Bad settings or a
missing database print one ``error:`` line and exit with status 1.
"""
from __future__ import annotations

import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not for operators
    from audiocopy.errors import AudiocopyError
    from audiocopy.web.launch import build_parser, run
    from audiocopy.web.settings import settings_from_args

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        settings = settings_from_args({k: v for k, v in vars(args).items() if k != "verbose"})
        run(settings, announce=lambda line: print(line, flush=True))
    except AudiocopyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
