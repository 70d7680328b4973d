"""The ``nbllm`` command: ``nbllm run NOTEBOOK`` executes a notebook headless in a
fresh kernel (final-only rendering, ``NBLLM_LIVE=0``) and prints each cell with its
text output, so a terminal shows what the notebook would show. With ``--save`` the
executed notebook is written back (outputs in place).

It needs nbclient and ipykernel, which the ``local`` extra installs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

TEXT_TYPES = ("text/plain", "text/markdown")


def _output_text(output: dict[str, Any]) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return str(output.get("text", ""))
    if kind == "error":
        return f"{output.get('ename')}: {output.get('evalue')}\n"
    data = output.get("data", {})
    for mime in TEXT_TYPES:
        if mime in data:
            text = data[mime]
            return ("".join(text) if isinstance(text, list) else str(text)) + "\n"
    return ""


def run_notebook(path: Path, *, save: bool, timeout_s: int) -> int:
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
    except ImportError:
        print("nbllm run needs nbclient and ipykernel: python -m pip install 'nbllm[local]'", file=sys.stderr)
        return 2
    notebook = nbformat.read(path, as_version=4)
    # The kernel renders each reply once (a terminal cannot show live updates anyway).
    kernel_env = {**os.environ, "NBLLM_LIVE": os.environ.get("NBLLM_LIVE", "0")}
    client = NotebookClient(
        notebook, timeout=timeout_s, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    status = 0
    try:
        client.execute(env=kernel_env)
    except CellExecutionError as exc:
        print(f"nbllm run: a cell failed: {str(exc).splitlines()[0] if str(exc) else exc}", file=sys.stderr)
        status = 1
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        print(f">>> {cell.source}")
        for output in cell.get("outputs", []):
            sys.stdout.write(_output_text(output))
    if save:
        nbformat.write(notebook, path)
    return status


def _version() -> str:
    # Not nbllm._constants: the CLI imports nothing of the package it does not need.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nbllm")
    except PackageNotFoundError:
        return "0+unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbllm", description="nbllm from the command line.")
    parser.add_argument("--version", action="version", version=f"nbllm {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute a notebook headless and print its outputs")
    run.add_argument("notebook", type=Path)
    run.add_argument("--save", action="store_true", help="write the executed notebook back")
    run.add_argument("--timeout", type=int, default=600, help="seconds a cell may take (default 600)")
    args = parser.parse_args(argv)
    if not args.notebook.is_file():
        parser.error(f"no notebook at {args.notebook}")
    return run_notebook(args.notebook, save=args.save, timeout_s=args.timeout)


if __name__ == "__main__":
    sys.exit(main())
