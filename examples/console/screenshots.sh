#!/usr/bin/env bash
# Takes the README's screenshots of the operator console (overview.png, timeline.png and
# messages.png, here) in a real headless Chromium: the same browser and WebDriver setup as the
# console's tests, against a relay and the sandbox on loopback with made-up users.
# Needs Debian's chromium and chromium-driver, and a font with Chinese glyphs for the made-up
# users' messages (apt-get install chromium chromium-driver fonts-wqy-microhei).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
KEFU_SCREENSHOTS_DIR="$here" KEFU_REQUIRE_CHROMIUM=1 \
    cargo test --locked -p kefu-connector --test console -- --ignored --exact take_the_readme_screenshots
ls -l "$here"/*.png
