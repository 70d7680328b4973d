"""What a ``%%chat`` cell does, without IPython: interpolation, conversations and trimming,
tools, the calls in flight; it draws through the small `View` protocol it owns.
"""
