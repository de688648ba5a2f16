#!/bin/bash
# Create (idempotently) the unprivileged user that runs creel's rootless-podman tests.
#
#   scripts/rootless-user.sh [NAME]        (run as root; NAME defaults to creel-rootless)
#
# Sets up: the user with a home directory, /etc/subuid + /etc/subgid ranges, the runtime
# dir /run/user/<uid> (0700, owned by the user; there is no systemd/logind here to make
# it), and ~/.config/containers/containers.conf (cgroupfs manager + file events logger,
# since there is no systemd user session). Prints the environment to use; or run
# commands as the user with scripts/as-rootless.sh CMD...
set -euo pipefail

NAME=${1:-creel-rootless}
SUB_COUNT=65536

die() { echo "rootless-user: error: $*" >&2; exit 1; }
say() { echo "rootless-user: $*" >&2; }

[ "$(id -u)" = 0 ] || die "must run as root"
for tool in useradd newuidmap newgidmap podman; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y podman uidmap)"
done

if ! id -u "$NAME" >/dev/null 2>&1; then
    say "creating user $NAME"
    useradd --create-home --shell /bin/bash --user-group "$NAME"
fi
U_UID=$(id -u "$NAME")
U_GID=$(id -g "$NAME")
U_HOME=$(getent passwd "$NAME" | cut -d: -f6)
[ -d "$U_HOME" ] || install -d -m 0755 -o "$U_UID" -g "$U_GID" "$U_HOME"

# Subordinate ids: useradd adds them when /etc/login.defs has SUB_UID_* (Debian does),
# but not for users made some other way. Pick a free range above every existing one.
ensure_subids() {
    local file=$1
    touch "$file"
    if grep -q "^$NAME:" "$file" || grep -q "^$U_UID:" "$file"; then
        return
    fi
    local start
    start=$(awk -F: 'BEGIN { m = 100000 } { e = $2 + $3; if (e > m) m = e } END { print m }' "$file")
    echo "$NAME:$start:$SUB_COUNT" >>"$file"
    say "added $NAME:$start:$SUB_COUNT to $file"
}
ensure_subids /etc/subuid
ensure_subids /etc/subgid

# Runtime dir (what pam_systemd would make): podman keeps its libpod/tmp state and
# the pause-process pid there.
U_RUN=/run/user/$U_UID
install -d -m 0755 /run/user
install -d -m 0700 -o "$U_UID" -g "$U_GID" "$U_RUN"
chown "$U_UID:$U_GID" "$U_RUN"
chmod 0700 "$U_RUN"

# No systemd user session: use cgroupfs and a file events log, which also silences
# podman's "no systemd user session available" warnings.
CONF_DIR=$U_HOME/.config/containers
if [ ! -f "$CONF_DIR/containers.conf" ]; then
    install -d -m 0755 -o "$U_UID" -g "$U_GID" "$U_HOME/.config" "$CONF_DIR"
    cat >"$CONF_DIR/containers.conf" <<'EOF'
# written by creel scripts/rootless-user.sh: no systemd user session on this host
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
    chown "$U_UID:$U_GID" "$CONF_DIR/containers.conf"
fi

if [ "$(stat -c %a /dev/net/tun 2>/dev/null || echo missing)" != 666 ]; then
    say "note: /dev/net/tun is not mode 0666: rootless slirp4netns networking will fail"
    say "      with 'open(\"/dev/net/tun\"): Permission denied' (CI runs chmod 666 /dev/net/tun)"
fi

# Make podman pick up the new id ranges if the user ran podman before they existed.
(cd / && runuser -u "$NAME" -- env -i HOME="$U_HOME" XDG_RUNTIME_DIR="$U_RUN" \
    PATH=/usr/local/bin:/usr/bin:/bin podman system migrate >/dev/null 2>&1) || true

say "user $NAME (uid $U_UID) is ready for rootless podman"
cat <<EOF
CREEL_ROOTLESS_USER=$NAME
CREEL_ROOTLESS_UID=$U_UID
CREEL_ROOTLESS_HOME=$U_HOME
CREEL_ROOTLESS_XDG_RUNTIME_DIR=$U_RUN
EOF
