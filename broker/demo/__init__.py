"""A demo of runbroker's SSE endpoint: simulated agent runs streamed to a browser page.

Start it with ``python -m broker.demo``; the app itself is :func:`broker.demo.app.create_app`.
"""
