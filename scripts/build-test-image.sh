#!/bin/bash
# Build the tiny test image (busybox + the `claude` stand-in) without any registry.
#
#   scripts/build-test-image.sh [--runtime podman|docker] [--user NAME] [--image REF] [--force]
#
#   --runtime podman   (default) import into podman's storage
#   --runtime docker   import into the docker engine at $DOCKER_HOST (default: the
#                      creel dockerd socket from scripts/dockerd.sh when it exists)
#   --user NAME        podman only: import into NAME's rootless storage (run as root)
#   --image REF        image reference (default localhost/creel-test:latest)
#   --force            rebuild even if the image is up to date
#
# The image is labelled io.creel.test-image-hash=<sha256 of the stand-in + this script>;
# when the existing image carries the same hash nothing is done.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
STANDIN=$REPO_DIR/tests-image/claude
LABEL_KEY=io.creel.test-image-hash

RUNTIME=podman
AS_USER=""
IMAGE=localhost/creel-test:latest
FORCE=0

die() { echo "build-test-image: error: $*" >&2; exit 1; }
say() { echo "build-test-image: $*" >&2; }
usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --runtime) RUNTIME=${2:?--runtime needs a value}; shift 2 ;;
        --runtime=*) RUNTIME=${1#*=}; shift ;;
        --user) AS_USER=${2:?--user needs a value}; shift 2 ;;
        --user=*) AS_USER=${1#*=}; shift ;;
        --image) IMAGE=${2:?--image needs a value}; shift 2 ;;
        --image=*) IMAGE=${1#*=}; shift ;;
        --force) FORCE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

case "$RUNTIME" in
    podman|docker) ;;
    *) die "--runtime must be podman or docker (got '$RUNTIME')" ;;
esac
[ -f "$STANDIN" ] || die "stand-in not found: $STANDIN"
if [ -n "$AS_USER" ]; then
    [ "$RUNTIME" = podman ] || die "--user is only supported with --runtime podman"
    [ "$(id -u)" = 0 ] || die "--user needs root (it runs podman via runuser)"
    id -u "$AS_USER" >/dev/null 2>&1 || die "no such user: $AS_USER (run scripts/rootless-user.sh?)"
fi

# ---- how to call the engine -------------------------------------------------------
if [ "$RUNTIME" = docker ]; then
    command -v docker >/dev/null || die "docker client not found on PATH"
    if [ -z "${DOCKER_HOST:-}" ] && [ -S /run/creel-dockerd/docker.sock ]; then
        export DOCKER_HOST=unix:///run/creel-dockerd/docker.sock
    fi
    engine() { docker "$@"; }
    WHERE="docker (${DOCKER_HOST:-default socket})"
elif [ -n "$AS_USER" ]; then
    command -v podman >/dev/null || die "podman not found on PATH"
    U_UID=$(id -u "$AS_USER")
    U_HOME=$(getent passwd "$AS_USER" | cut -d: -f6)
    U_RUN=/run/user/$U_UID
    if [ ! -d "$U_RUN" ]; then
        install -d -m 0700 -o "$AS_USER" -g "$(id -g "$AS_USER")" "$U_RUN"
    fi
    engine() {
        # cd: runuser keeps the caller's cwd, which the user may not be able to read.
        (cd / && runuser -u "$AS_USER" -- env -i HOME="$U_HOME" USER="$AS_USER" LOGNAME="$AS_USER" \
            XDG_RUNTIME_DIR="$U_RUN" PATH=/usr/local/bin:/usr/bin:/bin \
            podman "$@")
    }
    WHERE="rootless podman of $AS_USER"
else
    command -v podman >/dev/null || die "podman not found on PATH"
    engine() { podman "$@"; }
    WHERE="podman ($(id -un))"
fi

HASH=$(cat "$STANDIN" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)

# ---- up to date? ---------------------------------------------------------------------
if [ "$FORCE" = 0 ]; then
    current=$(engine image inspect --format "{{ index .Config.Labels \"$LABEL_KEY\" }}" "$IMAGE" 2>/dev/null || true)
    if [ "$current" = "$HASH" ]; then
        say "$IMAGE is up to date in $WHERE (hash ${HASH:0:12})"
        exit 0
    fi
fi
old_id=$(engine image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)

# ---- busybox --------------------------------------------------------------------------
busybox_ok() {
    [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1
}
if ! busybox_ok; then
    [ "$(id -u)" = 0 ] || die "/bin/busybox (static) missing: apt-get install -y busybox-static"
    say "installing busybox-static"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static >/dev/null
    busybox_ok || die "/bin/busybox is not a static binary after installing busybox-static"
fi

# ---- rootfs ---------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/creel-test-image.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/rootfs
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,root,home/agent,workspace,tmp,var/tmp,proc,sys,dev,run}
cp /bin/busybox "$ROOT/bin/busybox"
chmod 0755 "$ROOT/bin/busybox"
# Applet links, only where nothing exists (the list contains bin/busybox itself).
n=0
while IFS= read -r applet; do
    [ -n "$applet" ] || continue
    dest=$ROOT/$applet
    if [ -e "$dest" ] || [ -L "$dest" ]; then
        continue
    fi
    mkdir -p "$(dirname "$dest")"
    ln -s /bin/busybox "$dest"
    n=$((n + 1))
done < <(/bin/busybox --list-full)
install -m 0755 "$STANDIN" "$ROOT/usr/local/bin/claude"

cat >"$ROOT/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
agent:x:1000:1000:agent:/home/agent:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$ROOT/etc/group" <<'EOF'
root:x:0:
agent:x:1000:
nogroup:x:65534:
EOF
chmod 0644 "$ROOT/etc/passwd" "$ROOT/etc/group"
chmod 0700 "$ROOT/root"
chmod 1777 "$ROOT/tmp" "$ROOT/var/tmp"
chmod 0755 "$ROOT/workspace"
if [ "$(id -u)" = 0 ]; then
    chown -R 0:0 "$ROOT"
    chown 1000:1000 "$ROOT/home/agent"
    chmod 0755 "$ROOT/home/agent"
else
    chmod 1777 "$ROOT/home/agent"
fi
tar --numeric-owner -C "$ROOT" -cf "$WORK/rootfs.tar" .

# ---- import ---------------------------------------------------------------------------
CHANGES=(
    --change 'ENV=PATH=/usr/local/bin:/usr/bin:/bin'
    --change 'WORKDIR=/workspace'
    --change 'CMD ["/bin/sh"]'
    --change "LABEL $LABEL_KEY=$HASH"
)
say "importing $IMAGE into $WHERE ($n applet links, hash ${HASH:0:12})"
if [ "$RUNTIME" = docker ]; then
    # `docker import` only understands the `KEY VALUE` / `KEY=VALUE` Dockerfile syntax.
    engine import \
        --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
        --change 'WORKDIR /workspace' \
        --change 'CMD ["/bin/sh"]' \
        --change "LABEL $LABEL_KEY=$HASH" \
        - "$IMAGE" <"$WORK/rootfs.tar" >/dev/null
else
    engine import --quiet "${CHANGES[@]}" - "$IMAGE" <"$WORK/rootfs.tar" >/dev/null
fi

new_id=$(engine image inspect --format '{{.Id}}' "$IMAGE")
got=$(engine image inspect --format "{{ index .Config.Labels \"$LABEL_KEY\" }}" "$IMAGE")
[ "$got" = "$HASH" ] || die "imported image lacks the label $LABEL_KEY (got '$got')"
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    # The previous build is now untagged; drop it unless a container still uses it.
    engine rmi "$old_id" >/dev/null 2>&1 || true
fi
new_id=${new_id#sha256:}
say "built $IMAGE (${new_id:0:12}) in $WHERE"
