#!/usr/bin/env bash
# Re-fetch the console's vendored JavaScript from its npm packages (pinned versions), with
# its licence, into gateway/console/static/vendor/. No CDN: the console serves these files.
# Needs npm. Bump a version here, run it, and commit the files it writes.
set -euo pipefail
cd "$(dirname "$0")/.."
HTMX=2.0.11
ALPINE_CSP=3.17.4
DEST=gateway/console/static/vendor
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

(cd "$WORK" && npm pack --silent "htmx.org@$HTMX" "@alpinejs/csp@$ALPINE_CSP" >/dev/null)
mkdir -p "$WORK/htmx" "$WORK/alpine"
tar xzf "$WORK/htmx.org-$HTMX.tgz" -C "$WORK/htmx"
tar xzf "$WORK/alpinejs-csp-$ALPINE_CSP.tgz" -C "$WORK/alpine"

mkdir -p "$DEST"
cp "$WORK/htmx/package/dist/htmx.min.js" "$DEST/htmx.min.js"
cp "$WORK/htmx/package/LICENSE" "$DEST/htmx.LICENSE"
cp "$WORK/alpine/package/dist/cdn.min.js" "$DEST/alpine-csp.min.js"
# the package names its licence (MIT) without shipping the text; this is the project's
# LICENSE.md (github.com/alpinejs/alpine)
cat > "$DEST/alpine-csp.LICENSE" <<'MIT'
# MIT License

Copyright © 2019-2021 Caleb Porzio and contributors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
MIT

cat > "$DEST/README.md" <<README
# Vendored JavaScript

Served by the console from here (no CDN). Re-fetched by \`scripts/vendor_js.sh\` with \`npm pack\`.

| file | package | version | licence |
|------|---------|---------|---------|
| htmx.min.js | htmx.org (dist/htmx.min.js) | $HTMX | 0BSD (htmx.LICENSE) |
| alpine-csp.min.js | @alpinejs/csp (dist/cdn.min.js), the build that needs no \`eval\` | $ALPINE_CSP | MIT (alpine-csp.LICENSE) |

sha256:

\`\`\`
$(cd "$DEST" && sha256sum htmx.min.js alpine-csp.min.js)
\`\`\`
README
echo "vendored htmx $HTMX and @alpinejs/csp $ALPINE_CSP into $DEST"
