"""`%llm_cassette` (record a notebook's calls once, replay them later) and `%llm_cache` (answer
repeated deterministic requests from a local cache). Both delegate to `nbllm._calls`."""

from __future__ import annotations

from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from nbllm.magics.parsing import parse_line, usage_errors


@magics_class
class RecordingMagics(Magics):
    @magic_arguments()
    @argument(
        "path",
        nargs="?",
        help="The cassette file (YAML), or 'off' to stop using it; nothing shows the one in use.",
    )
    @argument(
        "--mode",
        choices=("record", "replay", "auto"),
        default="auto",
        help="record: send and record everything; replay: only from the file, never the network; "
        "auto (default): replay what is recorded, record what is missing. $NBLLM_CASSETTE_MODE overrides.",
    )
    @argument(
        "--speed",
        choices=("fast", "recorded"),
        default="fast",
        help="Play replies back as fast as possible (default) or at their recorded pace.",
    )
    @line_magic
    def llm_cassette(self, line: str) -> None:
        """Record this notebook's calls to a cassette, or replay them from it (put it at the top)."""
        from nbllm._replay.cassette import Cassette, active_cassette

        args = parse_line(self.llm_cassette, line)
        with usage_errors(line):
            current = active_cassette()
            if args.path is None:
                print(current.describe() if current else "No cassette in use.")
                return
            if args.path == "off":
                if current is None:
                    print("No cassette was in use.")
                    return
                current.deactivate()
                print(f"Stopped using the {current.describe()}.")
                return
            if current is not None:
                current.deactivate()
            cassette = Cassette(args.path, mode=args.mode, speed=args.speed).activate()
            print(f"Using the {cassette.describe()}.")

    @magic_arguments()
    @argument("action", choices=("on", "off", "clear", "stats"), help="What to do with the cache.")
    @argument("--path", help="The cache file (SQLite); by default in the platform's cache directory.")
    @argument("--ttl", type=float, help="Use entries at most this many seconds old.")
    @argument(
        "--force",
        action="store_true",
        help="Cache every request, not only deterministic ones (temperature 0 or a seed).",
    )
    @line_magic
    def llm_cache(self, line: str) -> None:
        """Answer repeated deterministic requests (temperature 0 or a seed) from a local cache."""
        from nbllm._replay import cache

        args = parse_line(self.llm_cache, line)
        with usage_errors(line):
            current = cache.active_cache()
            if args.action == "on":
                print(f"Caching: {cache.turn_on(args.path, args.ttl, args.force).stats()}.")
            elif args.action == "off":
                if current is None:
                    print("The response cache was not on.")
                    return
                summary = current.stats()
                cache.turn_off()
                print(f"Stopped caching ({summary}); the file stays.")
            elif current is None:
                print("The response cache is off; turn it on with %llm_cache on")
            elif args.action == "clear":
                print(f"Removed {current.clear()} cached replies from {current.path}.")
            else:
                print(current.stats())


def cassette_replaying() -> bool:
    """Whether a cassette that never reaches the network is in use (then no server need run)."""
    from nbllm._replay.cassette import active_cassette

    current = active_cassette()
    return current is not None and current.replaying_only
