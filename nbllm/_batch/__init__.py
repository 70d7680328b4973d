"""Many prompts at once, without IPython: `nbllm.map`'s run over a table's rows, its
checkpoints, its progress counters, and the Dask runner that spreads it over a cluster.
"""
