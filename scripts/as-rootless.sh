#!/bin/bash
# Run a command as the rootless test user (made by scripts/rootless-user.sh).
#
#   scripts/as-rootless.sh CMD [ARGS...]
#
# The command gets a clean environment: HOME, USER, LOGNAME, XDG_RUNTIME_DIR, PATH,
# plus the caller's CREEL_*, ANTHROPIC_*, CLAUDE_*, RUST_*, CARGO_TERM_* variables,
# TERM, LANG, and any variable named in AS_ROOTLESS_KEEP (space-separated).
# The working directory is kept when the user can enter it, else it is the user's home.
# CREEL_ROOTLESS_USER selects another user (default creel-rootless).
set -euo pipefail

NAME=${CREEL_ROOTLESS_USER:-creel-rootless}
[ $# -gt 0 ] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }
id -u "$NAME" >/dev/null 2>&1 || {
    echo "as-rootless: error: no user $NAME (run scripts/rootless-user.sh as root)" >&2
    exit 1
}
U_UID=$(id -u "$NAME")
U_HOME=$(getent passwd "$NAME" | cut -d: -f6)
U_RUN=/run/user/$U_UID
if [ ! -d "$U_RUN" ]; then
    echo "as-rootless: error: $U_RUN missing (run scripts/rootless-user.sh as root)" >&2
    exit 1
fi

envs=(
    HOME="$U_HOME" USER="$NAME" LOGNAME="$NAME"
    XDG_RUNTIME_DIR="$U_RUN"
    PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin
)
while IFS= read -r var; do
    case "$var" in
        CREEL_*|ANTHROPIC_*|CLAUDE_*|RUST_*|CARGO_TERM_*|TERM|LANG|LC_ALL) envs+=("$var=${!var}") ;;
    esac
done < <(compgen -e)
for var in ${AS_ROOTLESS_KEEP:-}; do
    if [ -n "${!var+x}" ]; then envs+=("$var=${!var}"); fi
done

# shellcheck disable=SC2016
inner='cd "$0" 2>/dev/null || cd "$HOME"; exec "$@"'
if [ "$(id -u)" = "$U_UID" ]; then
    exec env -i "${envs[@]}" /bin/sh -c "$inner" "$PWD" "$@"
fi
[ "$(id -u)" = 0 ] || { echo "as-rootless: error: must run as root or as $NAME" >&2; exit 1; }
exec runuser -u "$NAME" -- env -i "${envs[@]}" /bin/sh -c "$inner" "$PWD" "$@"
