"""``feathergate [serve] [--config PATH] ...``, ``check [--strict]`` and ``reload --pid``."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import replace
from typing import Any

import click

from feathergate.config import Config, load_config
from feathergate.errors import ConfigError
from feathergate.keys.wiring import deployment_prices

__all__ = ["main"]

log = logging.getLogger("feathergate")

DEFAULT_CONFIG = "feathergate.yaml"
DEFAULT_BIND = "127.0.0.1:8080"


def _config_path(value: str | None) -> str:
    return value or os.environ.get("FEATHERGATE_CONFIG") or DEFAULT_CONFIG


def _load(path: str, json_logs: bool = False) -> Config:
    """The config, or exit 2; in JSON mode the error is a log line like any other."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        _say(f"invalid config: {exc}", json_logs, logging.ERROR)
        sys.exit(2)
    return config


def _say(message: str, json_logs: bool, level: int = logging.WARNING) -> None:
    if json_logs:
        log.log(level, "%s", message)
    else:
        prefix = "warning: " if level == logging.WARNING else ""
        click.echo(f"feathergate: {prefix}{message}", err=True)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


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
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"], case_sensitive=False),
    envvar="FEATHERGATE_LOG_FORMAT",
    help="Every log line as text or as one JSON object (default: $FEATHERGATE_LOG_FORMAT, "
    "else litellm_settings.json_logs, else text).",
)
def serve(
    config_path: str | None,
    bind: str,
    workers: int,
    backlog: int | None,
    log_level: str,
    log_format: str | None,
) -> None:
    """Serve the gateway."""
    from feathergate.server import parse_bind, run, setup_logging

    # LiteLLM's JSON_LOGS too; the flag (or FEATHERGATE_LOG_FORMAT) decides over both.
    json_logs = log_format.lower() == "json" if log_format else _truthy(os.environ.get("JSON_LOGS"))
    setup_logging(log_level, json_logs)
    config = _load(_config_path(config_path), json_logs)
    if log_format is None and config.observability.json_logs and not json_logs:
        json_logs = True
        setup_logging(log_level, json_logs)
    for warning in config.warnings:
        _say(warning, json_logs)
    observability = replace(config.observability, json_logs=json_logs)  # workers read it
    config = replace(config, observability=observability)
    if backlog is not None:
        config = replace(config, server=replace(config.server, backlog=backlog))
    try:
        address = parse_bind(bind)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--bind") from None
    try:
        run(config, address, workers=workers, log_level=log_level)
    except OSError as exc:
        _say(f"cannot listen on {address}: {exc.strerror}", json_logs, logging.ERROR)
        sys.exit(1)


@main.command()
@click.option(
    "--pid", required=True, type=click.IntRange(1), help="The gateway's (supervisor's) pid."
)
def reload(pid: int) -> None:
    """Make a running gateway re-read its config (sends SIGHUP).

    An invalid config is refused and logged by the gateway, which keeps the
    one it has; see its log for the outcome.
    """
    import signal

    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        click.echo(f"feathergate: no process {pid}", err=True)
        sys.exit(1)
    except PermissionError:
        click.echo(f"feathergate: not allowed to signal process {pid}", err=True)
        sys.exit(1)
    click.echo(f"sent SIGHUP to {pid}")


def _row(values: list[Any], widths: list[int]) -> str:
    return "  ".join(str(v).ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()


@main.command()
@_config_option
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 2 when a model cannot be served (an unknown or unsupported provider).",
)
def check(config_path: str | None, strict: bool) -> None:
    """Validate a config and print its model table (keys are never printed)."""
    path = _config_path(config_path)
    config = _load(path)
    for warning in config.warnings:
        _say(warning, json_logs=False)
    header = ["MODEL", "PROVIDER", "UPSTREAM MODEL", "API BASE", "KEY", "PRICE IN/OUT PER 1M"]
    rows = []
    prices = deployment_prices(config)
    for dep in config.deployments:
        if dep.unavailable:
            key = "unavailable"
        elif dep.mock_response is not None:
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
    unavailable = [dep for dep in config.deployments if dep.unavailable]
    if unavailable:
        click.echo("")
        for dep in unavailable:
            click.echo(f"{dep.model_name}: {dep.unavailable}")
    if strict and unavailable:
        n = len(unavailable)
        click.echo(f"\nfeathergate: --strict: {n} model{'s' * (n != 1)} cannot be served", err=True)
        sys.exit(2)
    n = len(config.deployments)
    click.echo(f"{path}: OK, {n} deployment{'s' * (n != 1)}, {len(config.warnings)} warnings")
