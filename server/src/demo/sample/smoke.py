"""Smoke test: the deployed environment answers with the commit just built."""
import json
import os
import sys
import urllib.request

url = os.environ["GANTRY_PREFIX_URL"] + "api/version"
with urllib.request.urlopen(url, timeout=10) as response:
    info = json.load(response)
expected = os.environ["GANTRY_COMMIT"]
print(f"{url} -> {info}")
if info["commit"] != expected:
    sys.exit(f"expected commit {expected}, the environment serves {info['commit']}")
print("smoke test passed")
