"""Run a real Claude Code (``claude -p``) through FeatherGate against each strict fake upstream.

    npm install -g @anthropic-ai/claude-code       # once
    .venv/bin/python scripts/claude_code_probe.py  # all three upstreams
    .venv/bin/python scripts/claude_code_probe.py --upstream gemini --prompt "say hi" -v
    .venv/bin/python scripts/claude_code_probe.py --tool  # a Bash tool round trip first

Everything listens on 127.0.0.1: the strict fakes of tests/fakes (OpenAI,
Anthropic, Gemini), and FeatherGate with a master key and one alias per
upstream. Claude Code gets the environment the README's "Claude Code" section
documents (``ANTHROPIC_BASE_URL``, ``ANTHROPIC_AUTH_TOKEN``, every model
variable set to the alias, nonessential traffic off) and a fresh, empty
config directory. For each upstream the probe prints Claude Code's answer and
exit status, then every request the fake received (path, status, and the
fake's reason when it refused one), so a translation the real API would
refuse shows up here as the fake's 400. With ``--tool`` each fake first
answers with a call of Claude Code's ``Bash`` tool (``echo``, allowed with
``--allowedTools``), so the probe also checks that the tool result came back
to the upstream paired with its call (Gemini's thought signature included).

Not part of the test suite: it needs node and the claude-code package, which
CI does not install.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from feathergate.config import parse_config  # noqa: E402
from tests.conftest import run_gateway  # noqa: E402
from tests.fakes import anthropic as fa  # noqa: E402
from tests.fakes import gemini as fg  # noqa: E402
from tests.fakes import openai as fo  # noqa: E402
from tests.support.servers import serve_asgi  # noqa: E402

MASTER_KEY = "sk-probe-master"
UPSTREAMS = ("openai", "anthropic", "gemini")


@dataclass
class Upstream:
    name: str
    app: Any
    model: str
    key: str
    suffix: str = ""  # appended to the fake's URL for api_base

    def params(self, url: str) -> dict[str, Any]:
        return {
            "model": f"{self.name}/{self.model}",
            "api_base": url + self.suffix,
            "api_key": self.key,
        }

    def requests(self) -> list[tuple[str, int | str, str]]:
        """(path, status, why refused) of every request the fake received."""
        out: list[tuple[str, int | str, str]] = []
        for r in self.app.requests:
            status = getattr(r, "status", "")
            out.append((r.path, status, getattr(r, "rejection", None) or ""))
        return out


TOOL_OUTPUT = "probe-tool-ok"
BASH = ("Bash", {"command": f"echo {TOOL_OUTPUT}", "description": "Print a marker"})


def _upstreams(answer: str, *, tool: bool) -> dict[str, Upstream]:
    openai = fo.FakeOpenAI("sk-openai")
    openai.default = fo.Reply(text=f"{answer} (via an OpenAI-compatible upstream)")
    anthropic = fa.FakeAnthropic(api_key="sk-anthropic")
    anthropic.default = fa.Reply([fa.Text(f"{answer} (via Anthropic)")])
    # Gemini 3's rule on: a replayed call must carry the signature it came with.
    gemini = fg.FakeGemini(
        api_key="gemini-key", models=("gemini-2.5-pro",), require_thought_signatures=True
    )
    gemini_replies = [fg.text_reply(f"{answer} ", "(via Gemini)")]
    if tool:
        openai.script(fo.Reply(text="", tool_calls=[(BASH[0], json.dumps(BASH[1]))]))
        anthropic.script(fa.Reply([fa.ToolUse(*BASH)]))
        gemini_replies.insert(0, fg.tool_reply(BASH, signature="c2lnbmVk/+="))
    gemini.script = _Endless(gemini_replies)
    return {
        "openai": Upstream("openai", openai, "gpt-probe", "sk-openai", "/v1"),
        "anthropic": Upstream("anthropic", anthropic, "claude-probe", "sk-anthropic"),
        "gemini": Upstream("gemini", gemini, "gemini-2.5-pro", "gemini-key"),
    }


class _Endless(list[Any]):
    """A script that never runs out: its replies in order, then the last one again."""

    def pop(self, index: Any = -1) -> Any:
        return super().pop(0) if len(self) > 1 else self[0]


@asynccontextmanager
async def _serving(upstreams: dict[str, Upstream]) -> AsyncIterator[str]:
    async with (
        serve_asgi(upstreams["openai"].app) as openai_url,
        serve_asgi(upstreams["anthropic"].app) as anthropic_url,
        serve_asgi(upstreams["gemini"].app) as gemini_url,
    ):
        urls = {"openai": openai_url, "anthropic": anthropic_url, "gemini": gemini_url}
        models = [
            {"model_name": f"probe-{name}", "litellm_params": up.params(urls[name])}
            for name, up in upstreams.items()
        ]
        raw = {
            "model_list": models,
            "general_settings": {"master_key": MASTER_KEY},
            "feathergate_settings": {"shutdown_grace_period": 1},
        }
        async with run_gateway(parse_config(raw, {})) as base:
            yield base


EXTRA_ENV: dict[str, str] = {}


def claude_environment(base: str, alias: str, home: str) -> dict[str, str]:
    """The environment of the README's Claude Code section, plus an empty home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    env.update(
        {
            "ANTHROPIC_BASE_URL": base,
            "ANTHROPIC_AUTH_TOKEN": MASTER_KEY,
            "ANTHROPIC_MODEL": alias,
            "ANTHROPIC_DEFAULT_OPUS_MODEL": alias,
            "ANTHROPIC_DEFAULT_SONNET_MODEL": alias,
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": alias,
            "ANTHROPIC_SMALL_FAST_MODEL": alias,
            "CLAUDE_CODE_SUBAGENT_MODEL": alias,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "HOME": home,
            "CLAUDE_CONFIG_DIR": os.path.join(home, ".claude"),
            **EXTRA_ENV,
        }
    )
    return env


def _tool_result_seen(upstream: Upstream) -> bool:
    """Whether a request after the first carried the Bash output back."""
    return any(TOOL_OUTPUT in json.dumps(r.body) for r in upstream.app.requests[1:])


async def probe(
    claude: str, base: str, upstream: Upstream, prompt: str, verbose: bool, tool: bool
) -> bool:
    alias = f"probe-{upstream.name}"
    print(f"\n=== claude -p {prompt!r} via {alias} ({upstream.name} upstream)")
    with tempfile.TemporaryDirectory(prefix="claude-probe-") as home:
        argv = [claude, "-p", prompt, "--output-format", "text"]
        if tool:
            argv += ["--allowedTools", "Bash(echo:*)"]
        if verbose:
            argv += ["--verbose"]
        with trio.move_on_after(180) as scope:
            done = await trio.run_process(
                argv,
                env=claude_environment(base, alias, home),
                cwd=home,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                stdin=b"",
            )
    if scope.cancelled_caught:
        print("  claude did not finish within 180 s")
        ok = False
    else:
        print(f"  exit status: {done.returncode}")
        print(
            "  stdout: "
            + done.stdout.decode(errors="replace").strip().replace("\n", "\n          ")
        )
        err = done.stderr.decode(errors="replace").strip()
        if err:
            print("  stderr: " + err[-2000:].replace("\n", "\n          "))
        ok = done.returncode == 0 and upstream.name.lower() in done.stdout.decode().lower()
    print(f"  requests the {upstream.name} fake received:")
    for path, status, why in upstream.requests():
        print(f"    {path} -> {status or 'answered'} {why}".rstrip())
    if verbose:
        for r in upstream.app.requests:
            keys = sorted(r.body) if isinstance(r.body, dict) else r.body
            print(f"    {r.path}: {keys}")
            print(f"      anthropic-beta: {r.headers.get('anthropic-beta')}")
    if tool:
        seen = _tool_result_seen(upstream)
        print(f"  the Bash output reached the upstream as a tool result: {seen}")
        ok = ok and seen
    print(f"  result: {'OK' if ok else 'FAILED'}")
    return ok


async def main_async(args: argparse.Namespace) -> int:
    claude = args.claude or shutil.which("claude")
    if claude is None:
        print("claude not found: npm install -g @anthropic-ai/claude-code", file=sys.stderr)
        return 2
    EXTRA_ENV.update(item.split("=", 1) for item in args.env)
    upstreams = _upstreams("Hi from the probe!", tool=args.tool)
    results = {}
    async with _serving(upstreams) as base:
        print(f"FeatherGate on {base}; fakes on 127.0.0.1")
        for name in args.upstream.split(","):
            upstream = upstreams[name]
            results[name] = await probe(
                claude, base, upstream, args.prompt, args.verbose, args.tool
            )
    print("\nsummary: " + ", ".join(f"{n} {'OK' if ok else 'FAILED'}" for n, ok in results.items()))
    return 0 if all(results.values()) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", default=",".join(UPSTREAMS), help="comma-separated")
    parser.add_argument("--prompt", default="say hi")
    parser.add_argument("--claude", help="path to the claude executable")
    parser.add_argument("--tool", action="store_true", help="a Bash tool round trip first")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="extra environment"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sys.exit(trio.run(main_async, parser.parse_args()))


if __name__ == "__main__":
    main()
