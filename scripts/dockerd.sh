#!/bin/bash
# A private Docker engine (Debian's docker.io, 20.10) for creel's docker tests.
#
#   scripts/dockerd.sh start    start it in the background (idempotent), wait until it answers
#   scripts/dockerd.sh stop     stop it (idempotent)
#   scripts/dockerd.sh status   exit 0 when it answers, 1 otherwise
#   scripts/dockerd.sh env      print DOCKER_HOST=unix:///run/creel-dockerd/docker.sock
#
# It has its own socket, data root, exec root and pid file, so it does not clash with a
# system docker. Log: /run/creel-dockerd/dockerd.log. Any docker client works with it
# (the 28.x client in /usr/local/bin talks to the 20.10 engine fine):
#   export "$(scripts/dockerd.sh env)"; docker info
set -euo pipefail

RUN_DIR=/run/creel-dockerd
SOCK=$RUN_DIR/docker.sock
DOCKER_HOST_VALUE=unix://$SOCK
DATA_ROOT=/var/lib/creel-dockerd
EXEC_ROOT=$RUN_DIR/exec
PIDFILE=$RUN_DIR/docker.pid
LOG=$RUN_DIR/dockerd.log
START_TIMEOUT=${CREEL_DOCKERD_START_TIMEOUT:-60}

die() { echo "dockerd.sh: error: $*" >&2; exit 1; }
say() { echo "dockerd.sh: $*" >&2; }

answers() {
    [ -S "$SOCK" ] && DOCKER_HOST=$DOCKER_HOST_VALUE timeout 10 docker info >/dev/null 2>&1
}

daemon_pid() {
    local pid
    [ -f "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # pid reuse guard
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] || return 1
    echo "$pid"
}

start() {
    if answers; then
        say "already running (DOCKER_HOST=$DOCKER_HOST_VALUE)"
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "start needs root"
    if ! command -v dockerd >/dev/null; then
        say "installing docker.io"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/dev/null
    fi
    command -v docker >/dev/null || die "no docker client on PATH"
    if pid=$(daemon_pid); then
        say "dockerd (pid $pid) is up but does not answer yet; waiting"
    else
        mkdir -p "$RUN_DIR" "$EXEC_ROOT" "$DATA_ROOT"
        chmod 0711 "$RUN_DIR"
        rm -f "$PIDFILE"
        say "starting dockerd (data root $DATA_ROOT, log $LOG)"
        # setsid + nohup: the daemon must outlive this script and its terminal.
        {
            echo "---- $(date -u +%Y-%m-%dT%H:%M:%SZ) dockerd.sh start"
        } >>"$LOG"
        setsid nohup dockerd \
            --host "$DOCKER_HOST_VALUE" \
            --data-root "$DATA_ROOT" \
            --exec-root "$EXEC_ROOT" \
            --pidfile "$PIDFILE" \
            </dev/null >>"$LOG" 2>&1 &
        disown || true
    fi
    local waited=0
    until answers; do
        if [ $waited -ge $((START_TIMEOUT * 5)) ]; then
            tail -n 20 "$LOG" >&2 || true
            die "dockerd did not answer within ${START_TIMEOUT}s (log: $LOG)"
        fi
        if [ $waited -ge 10 ] && ! daemon_pid >/dev/null; then
            tail -n 20 "$LOG" >&2 || true
            die "dockerd exited (log: $LOG)"
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
    say "running (pid $(daemon_pid || echo '?'), DOCKER_HOST=$DOCKER_HOST_VALUE)"
}

stop() {
    local pid
    if ! pid=$(daemon_pid); then
        say "not running"
        rm -f "$PIDFILE"
        return 0
    fi
    say "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    local waited=0
    while kill -0 "$pid" 2>/dev/null; do
        if [ $waited -ge 150 ]; then
            say "dockerd did not stop within 30s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
    say "stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status)
        if answers; then
            echo "running: DOCKER_HOST=$DOCKER_HOST_VALUE"
        else
            echo "not running"
            exit 1
        fi
        ;;
    env) echo "DOCKER_HOST=$DOCKER_HOST_VALUE" ;;
    *)
        echo "usage: $0 start|stop|status|env" >&2
        exit 2
        ;;
esac
