"""What a provider is: its configuration, URL rules, key sources and auth styles, what could
be a secret, the session store and name resolution, YAML read safely, persistence, and the
bundled local model. Imports nothing from the layers above (a test checks).
"""
