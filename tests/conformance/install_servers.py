"""Install the real servers the conformance suite runs against (once; a finished install is kept).

    python tests/conformance/install_servers.py

- llama.cpp's C++ ``llama-server``, built from the llama.cpp tree that llama-cpp-python's sdist
  carries (the version of the installed wheel, so both servers run the same llama.cpp). The build
  needs ``-DGGML_NATIVE=OFF``: some CPUs advertise instructions (AMX) that trap when executed.
  It is linked statically, so the binary outlives the build tree, which is then deleted.
- the LiteLLM proxy, pinned (newer releases need a certifi the package registries here lack), in
  a venv of its own so its many dependencies never change the versions nbllm is tested with.
- Hugging Face's ``transformers serve`` with CPU torch, in a venv of its own, and SmolLM2 turned
  from the GGUF into a model folder (``gguf_to_hf.py``) inside a hand-made Hugging Face cache,
  since the server lists and loads models from that cache and there is no model hub here.

Everything goes under ``.servers/`` (git-ignored). The conformance suite starts and stops the
servers itself (``tests/conformance/servers.py``).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
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
# torch 2.13.0 is a CPU build these machines hold as a local file; a looser pin pulls CUDA builds.
TRANSFORMERS_REQUIREMENTS = ["torch==2.13.0", "transformers[serving]==5.23.0", "gguf==0.19.0"]
TRANSFORMERS_MODEL = "nbllm/SmolLM2-135M-Instruct-Q4_1"
"""The id `transformers serve` knows the converted model by (dequantized from the bundled GGUF)."""


def llama_server_path() -> Path:
    """Where the llama-server built from the installed llama-cpp-python's sources lives."""
    version = importlib.metadata.version(LLAMA_CPP_PYTHON)
    return SERVERS_DIR / f"llama-server-{version}" / "llama-server"


def litellm_path() -> Path:
    """The LiteLLM proxy's entry point inside its own venv."""
    return SERVERS_DIR / "litellm" / "bin" / "litellm"


def transformers_path() -> Path:
    """`transformers serve`'s entry point inside its own venv."""
    return SERVERS_DIR / "transformers" / "bin" / "transformers"


def hf_cache_path() -> Path:
    """The Hugging Face cache holding only `TRANSFORMERS_MODEL` (HF_HUB_CACHE for the server)."""
    return SERVERS_DIR / "hf-cache"


def run(*command: str | Path, log: Path | None = None) -> None:
    """Run `command`; with `log`, its output goes there (and its end is printed if it fails)."""
    if log is None:
        subprocess.run([str(part) for part in command], check=True)
        return
    with log.open("ab") as sink:
        done = subprocess.run([str(part) for part in command], stdout=sink, stderr=subprocess.STDOUT)
    if done.returncode:
        print("\n".join(log.read_text(errors="replace").splitlines()[-40:]), file=sys.stderr)
        raise subprocess.CalledProcessError(done.returncode, done.args)


def build_llama_server() -> None:
    target = llama_server_path()
    if target.exists():
        print(f"llama-server: kept {target}")
        return
    version = importlib.metadata.version(LLAMA_CPP_PYTHON)
    started = time.monotonic()
    log = SERVERS_DIR / "llama-server-build.log"
    log.unlink(missing_ok=True)
    print(f"llama-server: building (about 6 minutes on 2 cores; output in {log})")
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
            log=log,
        )
        run("cmake", "--build", build, "--target", "llama-server", "--parallel", log=log)
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


def install_transformers() -> None:
    entry = transformers_path()
    snapshot = hf_cache_path() / f"models--{TRANSFORMERS_MODEL.replace('/', '--')}"
    if entry.exists() and snapshot.exists():
        print(f"transformers serve: kept {entry} and {TRANSFORMERS_MODEL}")
        return
    from nbllm._providers.local import bundled_model_path

    started = time.monotonic()
    venv = entry.parent.parent
    run(sys.executable, "-m", "venv", "--clear", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", *TRANSFORMERS_REQUIREMENTS)
    with tempfile.TemporaryDirectory(prefix="smollm2-hf-") as scratch:
        folder = Path(scratch) / "model"
        run(venv / "bin" / "python", Path(__file__).with_name("gguf_to_hf.py"), bundled_model_path(), folder)
        shutil.rmtree(snapshot, ignore_errors=True)
        _cache_model(folder, snapshot)
    took = time.monotonic() - started
    print(f"transformers serve: installed, {TRANSFORMERS_MODEL} converted, in {took:.0f} s")


def _cache_model(folder: Path, repo: Path) -> None:
    """Lay `folder` out as the Hugging Face cache does: files stored once under blobs/ by their
    hash, linked from snapshots/REVISION/, and refs/main naming that revision."""
    files = sorted(path for path in folder.iterdir() if path.is_file())
    revision = hashlib.sha1("".join(f.name for f in files).encode()).hexdigest()
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for path in files:
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        shutil.move(path, blob)
        (snapshot / path.name).symlink_to(Path("..", "..", "blobs", blob.name))


def main() -> None:
    """Install all three at once: the compile keeps both cores busy, the pip installs mostly
    wait on downloads and disks, so side by side they take little more than the compile."""
    SERVERS_DIR.mkdir(exist_ok=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        jobs = [pool.submit(job) for job in (build_llama_server, install_litellm, install_transformers)]
        for job in jobs:
            job.result()


if __name__ == "__main__":
    main()
