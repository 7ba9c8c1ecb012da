#!/usr/bin/env bash
# A throwaway Orthanc PACS (REST, DICOMweb, DICOM) for the DICOM tests, on free loopback ports.
#
#   eval "$(bash .ci/orthanc.sh start)"   # install if missing, configure, start; exports CXREADER_TEST_ORTHANC_*
#   bash .ci/orthanc.sh url               # print the export lines of the running server again
#   bash .ci/orthanc.sh stop              # stop the server and delete its storage
#
# `start` is idempotent: a server this script already started is reused. Only the `export ...` lines go to
# stdout; progress goes to stderr. Orthanc, its DICOMweb plugin and dicom3tools (dciodvfy, which the tests use
# to validate the DICOM that cxreader writes) come from the Debian packages (apt-get) when missing.
# The server runs from $CXREADER_ORTHANC_DIR (default: $TMPDIR/cxreader-orthanc-<uid>), with its own
# configuration, storage and index there, not as the Debian service. Orthanc has no bind-address option:
# both ports listen on every interface. HTTP refuses every client but localhost (RemoteAccessAllowed false)
# and needs no password; the DICOM port takes C-ECHO and C-STORE from any AE title and host. It is for
# tests, never for data.
set -euo pipefail

STATE_DIR="${CXREADER_ORTHANC_DIR:-${TMPDIR:-/tmp}/cxreader-orthanc-$(id -u)}"
STORAGE_DIR="$STATE_DIR/storage"
CONFIG_FILE="$STATE_DIR/orthanc.json"
LOG_FILE="$STATE_DIR/server.log"
PID_FILE="$STATE_DIR/pid"
PORTS_FILE="$STATE_DIR/ports"
AE_TITLE="ORTHANC"
DICOMWEB_PLUGIN="/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
START_TIMEOUT=60

log() { echo "orthanc.sh: $*" >&2; }

find_orthanc() {
    # Debian installs the server in /usr/sbin, which is not in every user's PATH.
    if command -v Orthanc >/dev/null 2>&1; then
        command -v Orthanc
    elif [[ -x /usr/sbin/Orthanc ]]; then
        echo /usr/sbin/Orthanc
    else
        return 1
    fi
}

apt_install() {
    log "installing $* from the Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z "${APT_UPDATED:-}" ]]; then
        apt-get update >&2
        APT_UPDATED=1
    fi
    apt-get install -y "$@" >&2
}

install_orthanc() {
    local missing=()
    find_orthanc >/dev/null || missing+=(orthanc)
    [[ -f "$DICOMWEB_PLUGIN" ]] || missing+=(orthanc-dicomweb)
    if [[ ${#missing[@]} -gt 0 ]]; then
        if [[ $(id -u) -ne 0 ]]; then
            log "missing Debian packages (${missing[*]}); installing them needs root: run" \
                "'apt-get install -y ${missing[*]}' as root"
            exit 1
        fi
        apt_install "${missing[@]}"
    fi
    # dciodvfy only serves the validation tests, which skip without it: its absence is no reason to fail.
    if ! command -v dciodvfy >/dev/null 2>&1; then
        if [[ $(id -u) -ne 0 ]]; then
            log "dciodvfy is not installed and installing it needs root: run 'apt-get install -y dicom3tools'" \
                "as root (the DICOM validation tests will be skipped)"
        else
            apt_install dicom3tools || log "dicom3tools could not be installed; the DICOM validation tests will be skipped"
        fi
    fi
}

# Two distinct free ports: HTTP, then DICOM.
free_ports() {
    python3 -c '
import socket
sockets = [socket.socket() for _ in range(2)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
for s in sockets:
    s.close()'
}

http_port() { cut -d' ' -f1 "$PORTS_FILE"; }
dicom_port() { cut -d' ' -f2 "$PORTS_FILE"; }

answers() {
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2).read()' \
        "http://127.0.0.1:$(http_port)/system" >/dev/null 2>&1
}

# Whether the process in $PID_FILE is still an Orthanc this script started (not a recycled pid).
process_alive() {
    local pid
    [[ -f "$PID_FILE" ]] || return 1
    pid="$(cat "$PID_FILE")"
    kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$CONFIG_FILE"
}

is_running() {
    [[ -f "$PORTS_FILE" ]] && process_alive && answers
}

exports() {
    local http="http://127.0.0.1:$(http_port)"
    echo "export CXREADER_TEST_ORTHANC_URL=$http"
    echo "export CXREADER_TEST_ORTHANC_DICOMWEB=$http/dicom-web"
    echo "export CXREADER_TEST_ORTHANC_DICOM=$AE_TITLE@127.0.0.1:$(dicom_port)"
}

write_config() {
    # StableAge 1: studies become stable a second after their last instance, not a minute.
    # DicomWeb.Host: the host:port of the Retrieve URLs in STOW-RS and QIDO-RS answers. Left out, the plugin
    # takes the request's Host header, which dicomweb-client sends without the port (a client bug).
    cat >"$CONFIG_FILE" <<EOF
{
  "Name": "cxreader-test",
  "StorageDirectory": "$STORAGE_DIR",
  "IndexDirectory": "$STORAGE_DIR",
  "HttpPort": $(http_port),
  "DicomPort": $(dicom_port),
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomAet": "$AE_TITLE",
  "DicomCheckCalledAet": false,
  "DicomAlwaysAllowEcho": true,
  "DicomAlwaysAllowStore": true,
  "DicomCheckModalityHost": false,
  "UnknownSopClassAccepted": true,
  "StableAge": 1,
  "SaveJobs": false,
  "SyncStorageArea": false,
  "Plugins": ["$DICOMWEB_PLUGIN"],
  "DicomWeb": {
    "Enable": true,
    "Root": "/dicom-web/",
    "EnableWado": true,
    "Host": "127.0.0.1:$(http_port)"
  }
}
EOF
}

stop_process() {
    local pid
    process_alive || return 0
    pid="$(cat "$PID_FILE")"
    log "stopping Orthanc (pid $pid)"
    kill "$pid" 2>/dev/null || true
    # It takes a few seconds to close down; process_alive, not kill -0, so that a zombie counts as gone.
    for _ in $(seq 1 100); do
        process_alive || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

start() {
    local orthanc
    install_orthanc
    orthanc="$(find_orthanc)"
    if is_running; then
        log "reusing the server running from $STATE_DIR"
    else
        stop_process
        mkdir -p "$STORAGE_DIR"
        free_ports >"$PORTS_FILE"
        write_config
        log "starting $("$orthanc" --version | head -n 1) on 127.0.0.1: HTTP $(http_port), DICOM $(dicom_port)"
        # Its own session and no terminal: the server outlives this script and holds no pipe of its caller.
        setsid "$orthanc" "$CONFIG_FILE" </dev/null >"$LOG_FILE" 2>&1 &
        echo $! >"$PID_FILE"
        local waited=0
        until answers; do
            if ! process_alive || [[ $waited -ge $((START_TIMEOUT * 10)) ]]; then
                log "Orthanc did not answer on http://127.0.0.1:$(http_port)/system; the end of $LOG_FILE:"
                tail -n 30 "$LOG_FILE" >&2
                stop_process
                exit 1
            fi
            sleep 0.1
            waited=$((waited + 1))
        done
    fi
    exports
}

stop() {
    stop_process
    rm -rf "$STATE_DIR"
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    url)
        [[ -f "$PORTS_FILE" ]] || { log "no server started from $STATE_DIR"; exit 1; }
        exports
        ;;
    *)
        echo "usage: $0 [start|url|stop]" >&2
        exit 2
        ;;
esac
