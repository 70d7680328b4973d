"""What a provider is: its configuration (config.py) and the models it serves (models.py),
URL rules, key sources and auth styles, network trust and proxies, what could be a secret, the
session store and name resolution, YAML read safely, persistence, and the bundled local model.
Imports nothing from the layers above (a test checks).
"""
