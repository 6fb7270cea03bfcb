"""The demo's sample app: a page that shows which commit it runs.

Only Python's standard library; Gantry's local target runs it with $PORT set.
"""
import html
import http.server
import json
import os
from pathlib import Path

HERE = Path(__file__).parent
# The commit the build was made at: in production, promoted from staging,
# the commit staging built (the same files), not the merge commit.
BUILT = (HERE / "VERSION").read_text().strip() if (HERE / "VERSION").exists() else "unbuilt"
GREETING = (HERE / "greeting.txt").read_text().strip()
INFO = {
    "commit": os.environ.get("GANTRY_COMMIT", BUILT),
    "built_at": BUILT,
    "branch": os.environ.get("GANTRY_BRANCH", "?"),
    "environment": os.environ.get("GANTRY_ENV", "?"),
    "greeting": GREETING,
}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>shop · {environment}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}}
code{{background:#eef;padding:.1rem .3rem;border-radius:4px}}</style></head>
<body><h1>{greeting}</h1>
<p>This is <strong>shop</strong> in the <strong>{environment}</strong> environment,
deployed from branch <code>{branch}</code> at commit <code id="commit">{commit}</code>
(its build was made at <code id="built">{built_at}</code>).</p>
</body></html>
"""


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            self.reply(200, "text/plain", b"ok\n")
        elif self.path == "/api/version":
            self.reply(200, "application/json", json.dumps(INFO).encode())
        else:
            escaped = {key: html.escape(value) for key, value in INFO.items()}
            self.reply(200, "text/html; charset=utf-8", PAGE.format(**escaped).encode())

    def reply(self, status, content_type, body):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    # $HOST: 0.0.0.0 in the sandbox's own network namespace, else 127.0.0.1.
    host = os.environ.get("HOST", "127.0.0.1")
    http.server.ThreadingHTTPServer((host, port), Handler).serve_forever()
