"""The live web view (`claire web`, `--web` on paper and up): FastAPI, read-only, from the database.

:func:`serve_in_thread` serves it beside a run; :func:`open_view` + :func:`serve` in the foreground.
"""

from claire.runtime.web.server import TOKEN_ENV, WebError, WebHandle, open_view, serve, serve_in_thread

__all__ = ["TOKEN_ENV", "WebError", "WebHandle", "open_view", "serve", "serve_in_thread"]
