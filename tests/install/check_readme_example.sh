#!/usr/bin/env bash
# The README's C++ program is examples/deploy.cpp word for word (the install test compiles and
# runs that file). Usage: check_readme_example.sh SOURCE_DIR
set -euo pipefail
src=$1
# The first ```cpp block after the "Using Veil from C++" heading.
block=$(awk '/^## Using Veil from C\+\+/ { in_section = 1 }
             in_section && /^```cpp$/ { copying = 1; next }
             copying && /^```$/ { exit }
             copying { print }' "$src/README.md")
if [ "$block" != "$(cat "$src/examples/deploy.cpp")" ]; then
  echo "FAIL: the README's C++ example differs from examples/deploy.cpp:" >&2
  diff <(echo "$block") "$src/examples/deploy.cpp" >&2 || true
  exit 1
fi
echo "README's C++ example is examples/deploy.cpp"
