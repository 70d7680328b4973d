"""Install the real servers the conformance suite runs against (once; a finished install is kept).

    python tests/conformance/install_servers.py

- llama.cpp's C++ ``llama-server``, built from the llama.cpp tree that llama-cpp-python's sdist
  carries (the version of the installed wheel, so both servers run the same llama.cpp). The build
  needs ``-DGGML_NATIVE=OFF``: some CPUs advertise instructions (AMX) that trap when executed.
  It is linked statically, so the binary outlives the build tree, which is then deleted.
- the LiteLLM proxy, pinned (newer releases need a certifi the package registries here lack), in
  a venv of its own so its many dependencies never change the versions nbllm is tested with.

Everything goes under ``.servers/`` (git-ignored). The conformance suite starts and stops the
servers itself (``tests/conformance/servers.py``).
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVERS_DIR = ROOT / ".servers"
LITELLM_REQUIREMENT = "litellm[proxy]==1.106.2"
LLAMA_CPP_PYTHON = "llama-cpp-python"


def llama_server_path() -> Path:
    """Where the llama-server built from the installed llama-cpp-python's sources lives."""
    version = importlib.metadata.version(LLAMA_CPP_PYTHON)
    return SERVERS_DIR / f"llama-server-{version}" / "llama-server"


def litellm_path() -> Path:
    """The LiteLLM proxy's entry point inside its own venv."""
    return SERVERS_DIR / "litellm" / "bin" / "litellm"


def run(*command: str | Path, cwd: Path | None = None) -> None:
    subprocess.run([str(part) for part in command], cwd=cwd, check=True)


def build_llama_server() -> None:
    target = llama_server_path()
    if target.exists():
        print(f"llama-server: kept {target}")
        return
    version = importlib.metadata.version(LLAMA_CPP_PYTHON)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llama-server-build-") as scratch:
        work = Path(scratch)
        run(
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"{LLAMA_CPP_PYTHON}=={version}",
            "-d",
            work,
        )
        (sdist,) = work.glob("*.tar.gz")
        with tarfile.open(sdist) as archive:
            archive.extractall(work, filter="data")
        (source,) = work.glob("llama_cpp_python-*/vendor/llama.cpp")
        build = work / "build"
        run(
            "cmake",
            "-S",
            source,
            "-B",
            build,
            "-G",
            "Ninja",
            "-DCMAKE_BUILD_TYPE=Release",
            "-DGGML_NATIVE=OFF",
            "-DBUILD_SHARED_LIBS=OFF",
            "-DLLAMA_CURL=OFF",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
        )
        run("cmake", "--build", build, "--target", "llama-server", "--parallel")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(build / "bin" / "llama-server", target)
    print(f"llama-server: built {target} in {time.monotonic() - started:.0f} s")


def install_litellm() -> None:
    entry = litellm_path()
    if entry.exists():
        print(f"LiteLLM: kept {entry}")
        return
    started = time.monotonic()
    venv = entry.parent.parent
    run(sys.executable, "-m", "venv", "--clear", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", LITELLM_REQUIREMENT)
    print(f"LiteLLM: installed {LITELLM_REQUIREMENT} in {time.monotonic() - started:.0f} s")


def main() -> None:
    SERVERS_DIR.mkdir(exist_ok=True)
    install_litellm()
    build_llama_server()


if __name__ == "__main__":
    main()
