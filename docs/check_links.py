#!/usr/bin/env python3
"""Checks the README and the user guide for broken links (`./x test`).

Every relative link in README.md and docs/src/*.md must name a file that
exists, and its `#anchor` a heading of that file (GitHub's and mdBook's
slugs); every guide page must be in SUMMARY.md and linked from the README.
With `--built DIR`, the pages mdBook wrote are checked too: each relative
`href`/`src` resolves from where the page is served.

Prints each broken link as `file:line: what is wrong` and exits 1 if any.
"""

import glob
import html.parser
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDE = os.path.join(ROOT, "docs", "src")
LINK = re.compile(r'\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
EXTERNAL = re.compile(r"^(https?:|mailto:)")


def outside_code(text):
    """The lines of a Markdown file with fenced code blocks blanked out
    (a `# gantry.toml` line in a block is not a heading)."""
    lines, fence = [], None
    for line in text.split("\n"):
        marker = re.match(r"^\s*(```+|~~~+)", line)
        if marker:
            if fence is None:
                fence = marker.group(1)[:3]
                lines.append("")
                continue
            if line.strip().startswith(fence):
                fence = None
                lines.append("")
                continue
        lines.append("" if fence else line)
    return lines


def slug(heading):
    heading = re.sub(r"<[^>]+>", "", heading).strip().lower()
    heading = re.sub(r"[^\w\- ]", "", heading)
    return heading.replace(" ", "-")


def anchors(path):
    seen, found = {}, set()
    for line in outside_code(open(path, encoding="utf-8").read()):
        heading = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if heading:
            name = slug(heading.group(2))
            count = seen.get(name, 0)
            seen[name] = count + 1
            found.add(name if count == 0 else f"{name}-{count}")
    return found


def check_sources(errors):
    files = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(GUIDE, "*.md")))
    for file in files:
        where = os.path.relpath(file, ROOT)
        for number, line in enumerate(outside_code(open(file, encoding="utf-8").read()), 1):
            for link in LINK.finditer(re.sub(r"`[^`]*`", "", line)):
                target = link.group(1)
                if EXTERNAL.match(target):
                    continue
                path, _, anchor = target.partition("#")
                resolved = file if path == "" else os.path.normpath(os.path.join(os.path.dirname(file), path))
                if not os.path.exists(resolved):
                    errors.append(f"{where}:{number}: {target}: no such file")
                elif anchor and not resolved.endswith(".md"):
                    errors.append(f"{where}:{number}: {target}: an anchor into a file that is not Markdown")
                elif anchor and anchor not in anchors(resolved):
                    errors.append(f"{where}:{number}: {target}: no heading #{anchor} there")
    summary = open(os.path.join(GUIDE, "SUMMARY.md"), encoding="utf-8").read()
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    for page in sorted(glob.glob(os.path.join(GUIDE, "*.md"))):
        name = os.path.basename(page)
        if name == "SUMMARY.md":
            continue
        if f"]({name})" not in summary:
            errors.append(f"docs/src/SUMMARY.md: does not list {name}")
        if not re.search(r"\]\(docs/src/" + re.escape(name) + r"(#[^)]*)?\)", readme):
            errors.append(f"README.md: does not link the guide page {name}")
    return len(files)


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.found, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("href", "src") and value and tag in ("a", "img"):
                self.found.append((self.getpos()[0], value))


def check_built(built, errors):
    pages = {}
    for page in glob.glob(os.path.join(built, "*.html")):
        parser = Links()
        parser.feed(open(page, encoding="utf-8").read())
        pages[os.path.normpath(page)] = parser
    for page, parser in sorted(pages.items()):
        where = os.path.relpath(page, ROOT)
        for number, target in parser.found:
            if EXTERNAL.match(target) or target.startswith(("javascript:", "data:")):
                continue
            path, _, anchor = target.partition("#")
            resolved = page if path == "" else os.path.normpath(os.path.join(os.path.dirname(page), path))
            if not os.path.exists(resolved):
                errors.append(f"{where}:{number}: {target}: no such file")
            elif anchor and resolved in pages and anchor not in pages[resolved].ids:
                errors.append(f"{where}:{number}: {target}: no element #{anchor} there")
    return len(pages)


def main():
    errors = []
    files = check_sources(errors)
    said = f"{files} Markdown files"
    if len(sys.argv) == 3 and sys.argv[1] == "--built":
        said += f", {check_built(os.path.abspath(sys.argv[2]), errors)} built pages"
    for error in errors:
        print(error)
    print(f"links: {said} checked, {len(errors)} broken")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
