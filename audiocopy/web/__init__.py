"""The streaming recognition server: aiohttp app, WebSocket protocol, pages.

Place in the pipeline: a thin shell over ``decision`` and ``plays``, like the
CLI. Only this package imports aiohttp. Start it with ``server.py`` or
``audiocopy serve``; build it in code with ``web.app.create_app``.
Importing ``audiocopy.web`` alone stays cheap: submodules load on use.
"""
