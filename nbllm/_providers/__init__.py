"""What a provider is: its configuration, URL rules, key sources and auth styles, the
session store and name resolution, YAML persistence, and the bundled local model.
Imports nothing from the layers above (a test checks).
"""
