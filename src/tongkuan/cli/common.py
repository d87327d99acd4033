"""The `tongkuan` command group, its shared options, and `serve`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from tongkuan.config import Settings
from tongkuan.errors import ConfigError

DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="TONGKUAN_DATA_DIR",
    default="data",
    show_default=True,
    help="Data directory: catalog, index, images, model cache, tongkuan.toml.",
)
CHECKS = click.option(
    "--check",
    "checks",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A check set (see tongkuan eval) that decides the switch: R@1 must rise by the margin and R@5 not fall.",
)
MAX_REQUEST_HEAD = 16 * 1024
"""The most bytes of a request line and headers uvicorn buffers; more is a 400."""
KEEP_ALIVE_S = 5
"""Seconds an idle keep-alive connection stays open between requests."""

CHECK_MARGIN = click.option("--check-margin", type=float, default=None, help="R@1 to gain [default: 0.02].")


def server_options(settings: Settings, host: str, port: int) -> dict[str, Any]:
    """The uvicorn settings `tongkuan serve` runs with (`uvicorn.run(app, **options)`).

    uvicorn's access log would print appSecret and sign; the app logs requests without them.
    Forwarded headers are believed only from the configured proxies
    (TONGKUAN_FORWARDED_ALLOW_IPS). The HTTP parser is h11, whose request head limit these
    settings set (httptools, if installed, would ignore it). Neither parser has a deadline
    for reading a request's head: put a reverse proxy in front for that (README, Scaling out).
    """
    return {
        "host": host,
        "port": port,
        "log_level": "info",
        "access_log": False,
        "proxy_headers": settings.http.proxy_addresses is not None,
        "forwarded_allow_ips": settings.http.proxy_addresses,
        "http": "h11",
        "h11_max_incomplete_event_size": MAX_REQUEST_HEAD,
        "timeout_keep_alive": KEEP_ALIVE_S,
    }


def settings_from(data_dir: Path, **overrides: Any) -> Settings:
    """The settings, or the one line that says which one is wrong (exit status 1)."""
    try:
        return Settings(data_dir=data_dir, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level.")
@click.version_option(package_name="tongkuan")
def main(verbose: bool) -> None:
    """tongkuan: self-hosted product image search (Taobao Image Search V2.0 compatible)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command()
@DATA_DIR
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--model", default=None, help="Shipped model name or model.json path.")
def serve(data_dir: Path, host: str, port: int, model: str | None) -> None:
    """Run the HTTP API."""
    settings = settings_from(data_dir, model=model)  # a bad setting is one line, before any import logs
    import uvicorn

    from tongkuan.api.app import create_app

    app = create_app(settings)
    if (
        host not in ("127.0.0.1", "::1", "localhost")
        and not settings.http.public_url
        and not settings.http.allowed_hosts
    ):
        logging.getLogger(__name__).warning(
            "listening on %s, but only requests to 127.0.0.1, ::1 or localhost are answered: "
            "set TONGKUAN_PUBLIC_URL or TONGKUAN_ALLOWED_HOSTS to the names clients use",
            host,
        )
    uvicorn.run(app, **server_options(settings, host, port))
