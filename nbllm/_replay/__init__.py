"""Record and replay at the transport, below the calls: the hook every nbllm request passes
through (`tape`), cassettes that record a notebook's calls and play them back, the response
cache, and what they share (`recording`: matching keys, masking, stored responses). No IPython,
no ipywidgets; nothing here knows about conversations or retries.
"""
