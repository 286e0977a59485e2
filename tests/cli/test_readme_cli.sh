#!/usr/bin/env bash
# The README documents every command's flags as the program knows them:
# each flag that `morphogen CMD --help` names appears in the README's
# section for CMD, and each flag in that section's heading (the synopsis) is
# one the program knows. A flag added or renamed without the README
# following fails.
set -euo pipefail
source "$MG_SOURCE_DIR/tests/cli/lib.sh"

# --help itself is documented once, for all commands.
flags() { grep -oE -- '--[a-z][a-z-]*' | grep -vx -- '--help' | sort -u; }
for cmd in train grow grad target; do
    "$MORPHOGEN" "$cmd" --help >help.txt 2>&1 || fail "morphogen $cmd --help exited non-zero"
    # The section: from its heading to the next heading.
    awk -v h="### \`morphogen $cmd " 'index($0, h) == 1 {on = 1; print; next} on && /^##/ {exit} on' \
        "$MG_SOURCE_DIR/README.md" >section.txt
    [ -s section.txt ] || fail "README.md has no section '### \`morphogen $cmd ...'"
    missing=$(comm -23 <(flags <help.txt) <(flags <section.txt))
    [ -z "$missing" ] || fail "morphogen $cmd --help names flags its README section lacks: $missing"
    unknown=$(comm -13 <(flags <help.txt) <(head -n 1 section.txt | flags))
    [ -z "$unknown" ] || fail "README's synopsis of morphogen $cmd names flags the program lacks: $unknown"
done
echo "README command-line sections: all flags match"
