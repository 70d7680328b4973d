"""One call, protocol-agnostic above the wire: the SSE decoder, one HTTP attempt, the retry
policy and rate limits, a whole call with fallbacks, results, history, token counting, the
endpoint doctor and the background event-loop thread. No IPython, no ipywidgets.
"""
