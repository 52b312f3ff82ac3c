"""``feathergate [serve] [--config PATH] [--bind HOST:PORT] ...`` and ``feathergate check``."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from typing import Any

import click

from feathergate.config import Config, load_config
from feathergate.errors import ConfigError
from feathergate.keys.wiring import deployment_prices

__all__ = ["main"]

DEFAULT_CONFIG = "feathergate.yaml"
DEFAULT_BIND = "127.0.0.1:8080"


def _config_path(value: str | None) -> str:
    return value or os.environ.get("FEATHERGATE_CONFIG") or DEFAULT_CONFIG


def _load(path: str) -> Config:
    try:
        config = load_config(path)
    except ConfigError as exc:
        click.echo(f"feathergate: invalid config: {exc}", err=True)
        sys.exit(2)
    for warning in config.warnings:
        click.echo(f"feathergate: warning: {warning}", err=True)
    return config


_config_option = click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="LiteLLM-style config (default: $FEATHERGATE_CONFIG, else ./feathergate.yaml).",
)


class _DefaultServe(click.Group):
    """Plain ``feathergate [OPTIONS]`` means ``feathergate serve [OPTIONS]``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["serve", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultServe, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="feathergate")
def main() -> None:
    """FeatherGate: an OpenAI-compatible LLM gateway that reads LiteLLM's config."""


@main.command()
@_config_option
@click.option("--bind", default=DEFAULT_BIND, show_default=True, metavar="HOST:PORT")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--backlog",
    type=click.IntRange(1),
    metavar="N",
    help="Connections the kernel queues for accept (default: feathergate_settings.backlog, "
    "else 2048; capped by net.core.somaxconn).",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
def serve(
    config_path: str | None, bind: str, workers: int, backlog: int | None, log_level: str
) -> None:
    """Serve the gateway."""
    from feathergate.server import parse_bind, run, setup_logging

    setup_logging(log_level)
    config = _load(_config_path(config_path))
    if backlog is not None:
        config = replace(config, server=replace(config.server, backlog=backlog))
    try:
        address = parse_bind(bind)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--bind") from None
    try:
        run(config, address, workers=workers, log_level=log_level)
    except OSError as exc:
        click.echo(f"feathergate: cannot listen on {address}: {exc.strerror}", err=True)
        sys.exit(1)


def _row(values: list[Any], widths: list[int]) -> str:
    return "  ".join(str(v).ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()


@main.command()
@_config_option
def check(config_path: str | None) -> None:
    """Validate a config and print its model table (keys are never printed)."""
    path = _config_path(config_path)
    config = _load(path)
    header = ["MODEL", "PROVIDER", "UPSTREAM MODEL", "API BASE", "KEY", "PRICE IN/OUT PER 1M"]
    rows = []
    prices = deployment_prices(config)
    for dep in config.deployments:
        if dep.mock_response is not None:
            key = "mock"
        elif dep.missing_var:
            key = f"missing ${dep.missing_var}"
        else:
            key = "set" if dep.api_key else "none"
        price = prices[dep.id]
        shown = (
            f"${price.input * 1e6:g} / ${price.output * 1e6:g} ({price.source})"
            if price is not None
            else "unpriced"
        )
        rows.append(
            [dep.model_name, dep.provider, dep.model, dep.api_base or "(default)", key, shown]
        )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    click.echo(_row(header, widths))
    for row in rows:
        click.echo(_row(row, widths))
    click.echo(f"\nshared state: {config.shared_state.describe()}")
    n = len(config.deployments)
    click.echo(f"{path}: OK, {n} deployment{'s' * (n != 1)}, {len(config.warnings)} warnings")
