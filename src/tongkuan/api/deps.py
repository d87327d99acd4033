"""Dependencies routes declare: the engine the app was created with."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tongkuan.engine import Engine


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]
