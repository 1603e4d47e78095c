#!/bin/bash
# Starts the cassandra image with docker/cassandra/cdc.yaml applied to its cassandra.yaml, and
# the directories it names created on the cdc_raw volume, owned by the cassandra user.
# Then hands over to the image's own entry point (which applies CASSANDRA_* variables).
set -euo pipefail

conf="${CASSANDRA_CONF:-/etc/cassandra}/cassandra.yaml"
overrides="${CDC_CASSANDRA_OVERRIDES:-/cdc/cdc.yaml}"

# Start from the image's file on every start: a restarted container keeps its edited copy.
[ -f "$conf.image" ] || cp -p "$conf" "$conf.image"
cp -p "$conf.image" "$conf"

keys=$(sed -n -E 's/^([a-z_]+):.*/\1/p' "$overrides")
for key in $keys; do
    # The key, set or commented out, and its pre-4.1 name (cdc_total_space_in_mb, …).
    sed -i -E "/^#? ?${key}(_in_[a-z]+)?:/d" "$conf"
done
{
    printf '\n# ---- %s ----\n' "$overrides"
    cat "$overrides"
} >>"$conf"

# The volume starts out empty and owned by root; Cassandra runs as the image's cassandra user.
for key in commitlog_directory cdc_raw_directory; do
    dir=$(sed -n -E "s/^${key}:[[:space:]]*//p" "$overrides")
    if [ -n "$dir" ]; then
        mkdir -p "$dir"
        if id cassandra >/dev/null 2>&1; then
            chown cassandra:cassandra "$dir" "$(dirname "$dir")"
        fi
    fi
done

exec docker-entrypoint.sh "$@"
