"""MCP servers as tool sources: ``%llm_mcp`` and ``%%chat --tools mcp:NAME``.

A server is registered by name with its command (stdio) or its URL (streamable HTTP), through
the official ``mcp`` SDK. Its process starts on first use and is reused by later cells: a
*keeper* task on nbllm's background loop holds the SDK's client open (its streams belong to
the task that opened them) until the server is removed or the kernel exits, which stops the
process; the process's PID is kept, and anything still running at exit is killed by it. A
server that crashed is an nbllm error naming it, and starts again on the next use.

Its tools become `Tool` objects whose schemas are the server's own. Their descriptions are
the server's text, untrusted: ``%llm_mcp tools NAME`` shows them, and an MCP tool runs only
with the user's approval, unless the user accepted the server's read-only hints when adding it
(``--trust-read-only``) and the tool carries one.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import binascii
import contextlib
import json
import os
import signal
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from nbllm._calls.loop_thread import loop_thread
from nbllm._calls.results import ToolCall
from nbllm._cells.interpolate import ImagePart, scaled
from nbllm._cells.tools import Tool, ToolOutput, outcome_text
from nbllm._exceptions import ConfigError, ToolError
from nbllm._observers import Observers
from nbllm._providers.config import expand_vars, header_problem, literal_secret_headers
from nbllm._providers.secret_registry import add_secret_source, header_secrets
from nbllm._session import session

START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 120.0


@dataclass
class McpServer:
    """One registered server: how to reach it, and its running connection if any."""

    name: str
    command: list[str] = field(default_factory=list)
    """For stdio: the program and its arguments."""
    url: str | None = None
    """For streamable HTTP."""
    headers: dict[str, str] = field(default_factory=dict)
    """For streamable HTTP: sent with every request, as written (``${VAR}`` read when connecting)."""
    trust_read_only: bool = False
    """Whether the user accepted the server's read-only hints (its hinted tools run unasked)."""
    client: Any = None
    pids: list[int] = field(default_factory=list)
    log: Path | None = None
    """Where a stdio server's stderr goes."""
    _closing: asyncio.Event | None = None
    _keeper: asyncio.Future[Any] | None = None

    @property
    def where(self) -> str:
        return self.url or " ".join(self.command)

    def saved_form(self) -> dict[str, Any]:
        """How the providers file keeps it: headers holding a literal secret are left out (a
        ``${VAR}`` reference is kept as written)."""
        saved: dict[str, Any] = {"name": self.name}
        saved |= {"url": self.url} if self.url else {"command": list(self.command)}
        unsaved = literal_secret_headers(self.headers)
        kept = {name: value for name, value in self.headers.items() if name not in unsaved}
        saved |= {"headers": kept} if kept else {}
        saved |= {"trust_read_only": True} if self.trust_read_only else {}
        return saved

    @classmethod
    def from_saved(cls, entry: Mapping[str, Any]) -> McpServer:
        return cls(
            str(entry["name"]),
            [str(word) for word in entry.get("command") or []],
            entry.get("url"),
            {str(k): str(v) for k, v in (entry.get("headers") or {}).items()},
            trust_read_only=bool(entry.get("trust_read_only")),
        )

    def sent_headers(self) -> dict[str, str]:
        """The headers with ``${VAR}`` expanded (a ToolError names an unset variable)."""
        try:
            return {name: expand_vars(value, f"header {name}") for name, value in self.headers.items()}
        except ConfigError as exc:
            raise ToolError(f"MCP server {self.name!r}: {exc.message}") from None


class McpServers:
    """The session's MCP servers, by name."""

    def __init__(self) -> None:
        self.servers: dict[str, McpServer] = {}
        self._lock = threading.Lock()
        self.changes = Observers("MCP servers")
        """Emitted (no arguments) when a server is added, removed, started or stopped."""

    def add(self, server: McpServer) -> None:
        if not server.name.replace("-", "").replace("_", "").isalnum():
            raise ToolError(f"an MCP server's name has only letters, digits, - and _: not {server.name!r}")
        if not server.command and not server.url:
            raise ToolError(
                f"MCP server {server.name!r} needs a command (%llm_mcp add NAME -- COMMAND ARGS) "
                "or a URL (--url)"
            )
        if server.url is not None and not server.url.startswith(("http://", "https://")):
            raise ToolError(f"--url needs an http(s) URL, e.g. http://127.0.0.1:8000/mcp, not {server.url!r}")
        if server.headers and not server.url:
            raise ToolError("--header is for servers reached by URL; a stdio server reads its environment")
        for name, value in server.headers.items():
            problem = header_problem(name, value)
            if problem:
                raise ToolError(f"MCP server {server.name!r}: {problem}")
        with self._lock:
            if server.name in self.servers:
                raise ToolError(f"an MCP server named {server.name!r} exists; %llm_mcp remove it first")
            self.servers[server.name] = server
        self.changes.emit()

    def get(self, name: str) -> McpServer:
        server = self.servers.get(name)
        if server is None:
            known = ", ".join(self.servers) or "none yet"
            raise ToolError(
                f"no MCP server named {name!r} (registered: {known}); "
                f"add one with %llm_mcp add {name} -- COMMAND"
            )
        return server

    def remove(self, name: str) -> None:
        server = self.get(name)
        stop(server)
        with self._lock:
            self.servers.pop(name, None)
        self.changes.emit()

    def restore(self, entries: list[dict[str, Any]]) -> list[str]:
        """Add the servers a providers file saved (replacing same-named ones that are not
        running); the names added."""
        added = []
        for entry in entries:
            server = McpServer.from_saved(entry)
            current = self.servers.get(server.name)
            if current is not None:
                if current.client is not None:
                    continue  # a running server is the user's; a file does not replace it
                self.servers.pop(server.name)
            self.add(server)
            added.append(server.name)
        return added

    def saved_forms(self) -> list[dict[str, Any]]:
        return [server.saved_form() for server in self.servers.values()]

    def unsaved_headers(self) -> list[str]:
        """``SERVER: HEADER`` for every header a save leaves out (it holds a literal secret)."""
        return [
            f"{server.name}: {header}"
            for server in self.servers.values()
            for header in literal_secret_headers(server.headers)
        ]

    def secrets(self) -> set[str]:
        """The secret values of every server's headers, for the one masker."""
        found: set[str] = set()
        for server in list(self.servers.values()):
            found |= header_secrets(server.headers)
        return found


def get_mcp_servers() -> McpServers:
    return session().part(McpServers)


add_secret_source(lambda: get_mcp_servers().secrets())


# -- running a server -------------------------------------------------------------------------


def _children() -> set[int]:
    """PIDs of this process's children (Linux /proc; empty elsewhere)."""
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found.update(int(pid) for pid in task.read_text().split())
    return found


MCP_INSTALL = "pip install 'nbllm[mcp]'"


async def _keep(server: McpServer, ready: asyncio.Future[None]) -> None:
    """Hold the server's client open until asked to close (runs on the background loop)."""
    try:
        from mcp import Client, StdioServerParameters
        from mcp.client.stdio import stdio_client
    except ImportError:
        ready.set_exception(ToolError(f"MCP servers need the official mcp SDK: {MCP_INSTALL}"))
        return

    target: Any = server.url
    http: Any = None
    if server.url and server.headers:
        # The SDK's own factory (its timeouts: a server may hold a stream open for minutes).
        from mcp.client.streamable_http import (  # type: ignore[attr-defined]
            create_mcp_http_client,
            streamable_http_client,
        )

        http = create_mcp_http_client(headers=server.sent_headers())
        target = streamable_http_client(server.url, http_client=http)
    if server.command:
        # The server's stderr goes to a log file: in a kernel, sys.stderr has no file descriptor
        # to hand to a process, and the log says why a server that did not start failed.
        server.log = Path(tempfile.gettempdir()) / f"nbllm-mcp-{server.name}-{os.getpid()}.log"
        errlog = server.log.open("a")  # closed when the keeper ends
        params = StdioServerParameters(command=server.command[0], args=server.command[1:])
        target = stdio_client(params, errlog=errlog)
    before = _children()
    server._closing = asyncio.Event()
    try:
        async with Client(target) as client:
            server.client = client
            server.pids = sorted(_children() - before)
            ready.set_result(None)
            get_mcp_servers().changes.emit()
            await server._closing.wait()
    except Exception as exc:
        # Said to the starter through `ready`, or (a crash later) noticed on the next use,
        # which starts the server again: never an unretrieved task exception.
        if not ready.done():
            ready.set_exception(exc)
    finally:
        server.client = None
        get_mcp_servers().changes.emit()
        if server.command:
            errlog.close()
        if http is not None:
            await http.aclose()


async def _start_async(server: McpServer) -> None:
    """Start the server's keeper and wait until its client is ready (on the background loop)."""
    server.sent_headers()  # an unset ${VAR} is named now, not after the start timeout
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    server._keeper = asyncio.ensure_future(_keep(server, ready))
    try:
        await asyncio.wait_for(ready, START_TIMEOUT_S)
    except Exception as exc:
        server.client = None
        log = f" and read {server.log}" if server.log else ""
        raise ToolError(
            f"MCP server {server.name!r} ({server.where}) did not start: {type(exc).__name__}: {exc}",
            hint=f"check that the command runs in a terminal{log}; "
            f"%llm_mcp remove {server.name} and add it again",
        ) from None


def _needs_start(server: McpServer) -> bool:
    """Not started yet, or its keeper ended (the process crashed): start it (again)."""
    return server.client is None or (server._keeper is not None and server._keeper.done())


def connected(server: McpServer) -> Any:
    """The server's client, starting the server when needed (from any thread but the
    background loop's)."""
    if _needs_start(server):
        server.client = None
        loop_thread().submit(_start_async(server)).result(START_TIMEOUT_S + 5)
    return server.client


def stop(server: McpServer) -> None:
    """Close the client (the SDK stops the process), then kill any PID still there."""
    closing, keeper = server._closing, server._keeper
    if closing is not None and keeper is not None and not keeper.done():
        loop = loop_thread().loop
        loop.call_soon_threadsafe(closing.set)
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(asyncio.wait_for(_wait(keeper), 5), loop).result(6)
    for pid in server.pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    server.client, server.pids = None, []


async def _wait(future: asyncio.Future[Any]) -> None:
    with contextlib.suppress(BaseException):
        await future


@atexit.register
def _stop_all() -> None:
    """At kernel exit: every server of the running session is stopped."""
    for server in list(get_mcp_servers().servers.values()):
        stop(server)


async def _on_background(coro: Any) -> Any:
    """Await `coro` on the background loop, where the server's client lives."""
    loop = loop_thread().loop
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


# -- its tools --------------------------------------------------------------------------------


@dataclass(frozen=True)
class McpTool(Tool):
    """A tool of an MCP server: the server's schema, called through its client."""

    server: str = ""
    input_schema: dict[str, Any] = field(default_factory=dict)

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.input_schema},
        }

    def bind(self, call: ToolCall) -> Any:
        arguments = json.loads(call.arguments or "{}")
        if not isinstance(arguments, dict):
            raise ToolError("the arguments should be a JSON object")
        return lambda: self.function(arguments)


class _AnyArguments(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")


def list_tools(name: str) -> list[Any]:
    """The server's tools as the SDK gives them (name, description, schema, annotations)."""
    server = get_mcp_servers().get(name)
    client = connected(server)
    result = loop_thread().submit(client.list_tools()).result(CALL_TIMEOUT_S)
    return list(result.tools)


def tools_of(spec: str) -> dict[str, Tool]:
    """``mcp:NAME`` (all its tools) or ``mcp:NAME/TOOL`` as `Tool` objects."""
    name, _, only = spec.removeprefix("mcp:").partition("/")
    server = get_mcp_servers().get(name)
    found = list_tools(name)
    if only:
        found = [t for t in found if t.name == only]
        if not found:
            raise ToolError(f"MCP server {name!r} has no tool {only!r}; %llm_mcp tools {name} lists them")
    tools: dict[str, Tool] = {}
    for described in found:
        hint = getattr(getattr(described, "annotations", None), "read_only_hint", None)
        tools[described.name] = McpTool(
            name=described.name,
            function=_caller(server, described.name),
            arguments_model=_AnyArguments,
            description=(described.description or f"The {described.name} tool of MCP server {name}.")[:1024],
            read_only=bool(server.trust_read_only and hint),
            server=name,
            input_schema=dict(described.input_schema or {"type": "object", "properties": {}}),
        )
    return tools


def _caller(server: McpServer, tool: str) -> Any:
    async def call(arguments: dict[str, Any]) -> ToolOutput:
        if _needs_start(server):  # it crashed since the cell began: start it again
            server.client = None
            await _on_background(_start_async(server))
        client = server.client
        try:
            result = await _on_background(asyncio.wait_for(client.call_tool(tool, arguments), CALL_TIMEOUT_S))
        except Exception as exc:
            raise ToolError(
                f"MCP server {server.name!r} failed on {tool}: {type(exc).__name__}: {exc}"
            ) from None
        return result_output(result)

    return call


def result_output(result: Any) -> ToolOutput:
    """What the model gets of a tool's result: its text parts and resources' text as the text,
    and its images (scaled down as a prompt's are), each named in the text where it was."""
    parts, images = [], []
    for item in getattr(result, "content", []) or []:
        kind = getattr(item, "type", "")
        if kind == "text":
            parts.append(item.text)
        elif kind == "resource":
            resource = item.resource
            parts.append(getattr(resource, "text", None) or f"[a resource: {getattr(resource, 'uri', '?')}]")
        elif kind == "image":
            mime = getattr(item, "mime_type", None) or "image/png"
            try:
                images.append(scaled(ImagePart(mime, base64.b64decode(item.data, validate=True))))
                parts.append(f"[image {len(images)} ({mime})]")
            except (binascii.Error, TypeError, ValueError):
                parts.append(f"[an image ({mime}) that was not valid base64]")
        else:
            parts.append(f"[{kind or 'content'}]")
    text = outcome_text("\n".join(parts))
    return ToolOutput(f"error: {text}" if getattr(result, "is_error", False) else text, tuple(images))
