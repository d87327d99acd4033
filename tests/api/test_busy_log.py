"""How the error handler logs: an ordinary overload (503 busy) is one warning line, while an
unmapped error keeps its traceback at error level."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tongkuan.api.envelope import install_error_handlers
from tongkuan.errors import ServiceBusy, TongkuanError


def app_raising(exc: Exception) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise exc

    return app


def test_a_busy_answer_is_logged_as_one_warning_line_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with TestClient(app_raising(ServiceBusy("every picture download slot is taken"))) as client:
        with caplog.at_level(logging.INFO, logger="tongkuan.api.envelope"):
            response = client.get("/boom")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    (record,) = [r for r in caplog.records if r.name == "tongkuan.api.envelope"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "unmapped" not in record.getMessage() and "/boom" in record.getMessage()
    assert "every picture download slot is taken" in record.getMessage()
    assert response.json()["traceId"] in record.getMessage() and "\n" not in record.getMessage()


def test_an_unmapped_error_still_logs_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    class Unmapped(TongkuanError):
        pass

    with TestClient(app_raising(Unmapped("odd")), raise_server_exceptions=False) as client:
        with caplog.at_level(logging.INFO, logger="tongkuan.api.envelope"):
            response = client.get("/boom")
    assert response.status_code == 500
    (record,) = [r for r in caplog.records if r.name == "tongkuan.api.envelope"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
