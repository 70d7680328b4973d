"""``python -m nbllm.testing``: serve until interrupted (see `nbllm.testing.server.main`)."""

from nbllm.testing.server import main

if __name__ == "__main__":
    main()
