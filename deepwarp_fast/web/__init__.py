"""The browser demo behind `deepwarp-fast serve`: a small ASGI app (Starlette) and one
static page. Needs the ``serve`` extra (``pip install "deepwarp_fast[serve]"``).

    from deepwarp_fast.face import GazeRedirector
    from deepwarp_fast.web import create_app
    app = create_app(GazeRedirector())      # any ASGI server: uvicorn.run(app)
"""
from .app import Limits, create_app

__all__ = ["Limits", "create_app"]
