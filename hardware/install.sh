#!/usr/bin/env bash
# Install sticky-agent as a systemd service on a Raspberry Pi (Raspberry Pi OS Bookworm or
# later, 64- or 32-bit), from this checkout.
#
#   sudo hardware/install.sh                      # install or upgrade, then start the agent
#   hardware/install.sh --dry-run                 # print every action, change nothing (any machine)
#   sudo hardware/install.sh --api-user trap-07 --api-password-file /root/api-password
#
# Idempotent: run it again after `git pull` to upgrade. It never overwrites
# /etc/sticky-agent/agent.toml or /etc/sticky-agent/api-credentials once they exist.
# What it does, in order:
#   1. apt packages: picamera2, lgpio, venv, numpy, OpenCV, i2c-tools (only the missing ones)
#   2. groups video, gpio, i2c, spi and the system user sticky-agent in them
#   3. a virtualenv /opt/sticky-agent/venv (--system-site-packages, to see apt's picamera2,
#      lgpio, numpy and OpenCV) with this checkout's core pip-installed in it (no extras: pip
#      never installs numpy or OpenCV on the trap, and apt's versions are pinned as pip
#      constraints), then a check that numpy, cv2, simplejpeg and picamera2 still come from apt;
#      /usr/local/bin/stickyctl; /opt/sticky-agent/bench.py
#   4. /var/lib/sticky-agent (the agent's data) and /etc/sticky-agent (its configuration)
#   5. /etc/sticky-agent/agent.toml from config/pi.toml, if absent
#   6. /etc/sticky-agent/api-credentials (root:root 0600), if absent: from --api-user and
#      --api-password-file, else asked for on a terminal, else left empty (no API yet)
#   7. the systemd unit; daemon-reload; enable --now (restart if it was running: new code)
# Then check the trap with: sudo stickyctl doctor
set -euo pipefail

SERVICE=sticky-agent
SERVICE_USER=sticky-agent
SERVICE_GROUPS=(video gpio i2c spi)
PREFIX=/opt/sticky-agent
VENV=$PREFIX/venv
STATE_DIR=/var/lib/sticky-agent
CONF_DIR=/etc/sticky-agent
CONF_FILE=$CONF_DIR/agent.toml
CRED_FILE=$CONF_DIR/api-credentials
UNIT_DEST=/etc/systemd/system/$SERVICE.service
BIN_LINK=/usr/local/bin/stickyctl
# Debian's Python: the only one that sees apt's python3-* packages (not a pyenv or /usr/local one)
SYSTEM_PYTHON=${STICKY_AGENT_PYTHON:-/usr/bin/python3}
# apt's versions of these are written as pip constraints: pip may use them, never replace them
APT_PYTHON_DISTS=(numpy simplejpeg picamera2)
APT_CONSTRAINTS=$PREFIX/apt-constraints.txt
# Modules that must be imported from apt's folder, not from the virtualenv
APT_MODULES=(numpy cv2 simplejpeg picamera2)
# How the agent is pip-installed (tests/test_pi_install.py resolves exactly this for Raspberry
# Pi OS Trixie and Bookworm): the core and the web page's extra (pure Python: werkzeug,
# prometheus-client), never numpy or OpenCV, upgrading only what it must.
PIP_INSTALL_ARGS=(--disable-pip-version-check --no-cache-dir --upgrade --upgrade-strategy only-if-needed)
PIP_EXTRAS="[web]"
APT_PACKAGES=(
    python3-picamera2 # the camera (libcamera); Raspberry Pi OS only
    python3-lgpio     # gpiozero's pin factory on Bookworm (flash, button)
    python3-venv      # the agent's virtualenv
    python3-numpy     # numpy for picamera2 and the detector: apt's, never pip's (ABI)
    python3-opencv    # the insect detector (cv2): apt's, never pip's opencv-python wheels
    i2c-tools         # i2cdetect: find the RTC and I2C sensors
)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

DRY_RUN=0
FORCE=0
START=1
ENABLE_INTERFACES=0
API_USER=
API_PASSWORD_FILE=

usage() {
    cat <<EOF
Usage: $0 [options]

Install or upgrade sticky-agent as the systemd service $SERVICE (run as root).

Options:
  --dry-run                 print every action instead of doing it (no root needed)
  --api-user NAME           API username for $CRED_FILE (if that file is absent)
  --api-password-file FILE  read the API password from the first line of FILE
  --enable-interfaces       also turn on I2C and SPI with raspi-config (needs a reboot)
  --no-start                install and enable the service, but do not (re)start it
  --force                   install on a machine that is not a Raspberry Pi
  -h, --help                this help
EOF
}

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'install.sh: error: %s\n' "$*" >&2
    exit 1
}

# Run a command that changes the system, or only print it with --dry-run.
run() {
    if ((DRY_RUN)); then
        printf '[dry-run] %s\n' "$(quote "$@")"
    else
        printf '+ %s\n' "$(quote "$@")"
        "$@"
    fi
}

quote() {
    local out=() arg
    for arg in "$@"; do
        if [[ $arg =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then
            out+=("$arg")
        else
            out+=("$(printf '%q' "$arg")")
        fi
    done
    printf '%s' "${out[*]}"
}

parse_args() {
    while (($#)); do
        case $1 in
        --dry-run) DRY_RUN=1 ;;
        --force) FORCE=1 ;;
        --no-start) START=0 ;;
        --enable-interfaces) ENABLE_INTERFACES=1 ;;
        --api-user)
            (($# >= 2)) || die "--api-user needs a value"
            API_USER=$2
            shift
            ;;
        --api-user=*) API_USER=${1#*=} ;;
        --api-password-file)
            (($# >= 2)) || die "--api-password-file needs a value"
            API_PASSWORD_FILE=$2
            shift
            ;;
        --api-password-file=*) API_PASSWORD_FILE=${1#*=} ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            die "unknown option: $1"
            ;;
        esac
        shift
    done
    if [[ -n $API_PASSWORD_FILE && -z $API_USER ]]; then
        die "--api-password-file needs --api-user"
    fi
    if [[ -n $API_PASSWORD_FILE && ! -r $API_PASSWORD_FILE ]]; then
        die "cannot read the password file $API_PASSWORD_FILE"
    fi
    if [[ $API_USER == *:* ]]; then
        die "the API username may not contain ':'"
    fi
}

check_platform() {
    local model="" codename=""
    if [[ -r /proc/device-tree/model ]]; then
        model=$(tr -d '\0' </proc/device-tree/model)
    fi
    if [[ -r /etc/os-release ]]; then
        # shellcheck source=/dev/null
        codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
    fi
    say "machine: ${model:-not a Raspberry Pi}; OS: ${codename:-unknown}; architecture: $(uname -m)"
    if [[ $model != Raspberry\ Pi* ]]; then
        if ((DRY_RUN || FORCE)); then
            warn "this is not a Raspberry Pi: the camera and GPIO will not work here"
        else
            die "this is not a Raspberry Pi (no 'Raspberry Pi' in /proc/device-tree/model); use --force to install anyway, or --dry-run to see what would happen"
        fi
    fi
    case $codename in
    bookworm | trixie | forky) ;;
    *) warn "made for Raspberry Pi OS Bookworm or later, not '${codename:-unknown}'" ;;
    esac
    if ((!DRY_RUN && EUID != 0)); then
        die "run as root: sudo $0 $*"
    fi
    [[ -f $REPO/pyproject.toml && -f $REPO/systemd/$SERVICE.service ]] ||
        die "$REPO is not a sticky-agent checkout (no pyproject.toml or systemd unit)"
    if ! "$SYSTEM_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        if ((DRY_RUN)); then
            warn "sticky-agent needs Python 3.11 or later (Bookworm's python3); $SYSTEM_PYTHON is older or missing"
        else
            die "sticky-agent needs Python 3.11 or later (Raspberry Pi OS Bookworm or later)"
        fi
    fi
}

have_systemd() { [[ -d /run/systemd/system ]]; }

install_packages() {
    local missing=() unknown=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            continue
        fi
        missing+=("$pkg")
        if ! apt-cache show "$pkg" >/dev/null 2>&1; then
            unknown+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        say "apt packages: all installed (${APT_PACKAGES[*]})"
        return
    fi
    if ((${#unknown[@]})); then
        warn "not in this machine's apt sources (Raspberry Pi OS has them): ${unknown[*]}"
        if ((!DRY_RUN)); then
            # install what exists; a missing camera stack shows in `stickyctl doctor`
            local keep=() p u skip
            for p in "${missing[@]}"; do
                skip=0
                for u in "${unknown[@]}"; do [[ $p == "$u" ]] && skip=1; done
                ((skip)) || keep+=("$p")
            done
            missing=("${keep[@]}")
            ((${#missing[@]})) || return 0
        fi
    fi
    say "apt packages: installing ${missing[*]}"
    run apt-get update
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

create_user() {
    local g groups=()
    for g in "${SERVICE_GROUPS[@]}"; do
        if ! getent group "$g" >/dev/null; then
            # systemd refuses to start a unit whose SupplementaryGroups= do not exist
            say "group $g: creating it (Raspberry Pi OS has it; this machine does not)"
            run groupadd --system "$g"
        fi
        groups+=("$g")
    done
    local list
    list=$(
        IFS=,
        printf '%s' "${groups[*]}"
    )
    if id -u "$SERVICE_USER" >/dev/null 2>&1; then
        local have missing=()
        have=" $(id -nG "$SERVICE_USER") "
        for g in "${groups[@]}"; do
            [[ $have == *" $g "* ]] || missing+=("$g")
        done
        if ((${#missing[@]})); then
            say "user $SERVICE_USER: adding to groups ${missing[*]}"
            run usermod --append --groups "$list" "$SERVICE_USER"
        else
            say "user $SERVICE_USER: exists, in groups $list"
        fi
    else
        say "user $SERVICE_USER: creating the system user"
        run useradd --system --user-group --groups "$list" --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "sticky-agent insect trap" "$SERVICE_USER"
    fi
}

create_dirs() {
    say "directories: $STATE_DIR (data), $CONF_DIR (configuration), $PREFIX (software)"
    run install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE_DIR"
    run install -d -m 0755 -o root -g root "$CONF_DIR"
    run install -d -m 0755 -o root -g root "$PREFIX"
}

install_venv() {
    if [[ -x $VENV/bin/python ]] && grep -qi '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg" 2>/dev/null; then
        say "virtualenv $VENV: exists"
    elif [[ -e $VENV ]]; then
        say "virtualenv $VENV: exists without system site packages; recreating it"
        run "$SYSTEM_PYTHON" -m venv --clear --system-site-packages "$VENV"
    else
        say "virtualenv $VENV: creating it (with system site packages: apt's picamera2, lgpio, numpy, OpenCV)"
        run "$SYSTEM_PYTHON" -m venv --system-site-packages "$VENV"
    fi
    write_apt_constraints
    say "sticky-agent: installing $REPO$PIP_EXTRAS into $VENV (the core and the web page: numpy and OpenCV stay apt's)"
    run "$VENV/bin/python" -m pip install "${PIP_INSTALL_ARGS[@]}" --constraint "$APT_CONSTRAINTS" "$REPO$PIP_EXTRAS"
    check_apt_modules
    run ln -sfn "$VENV/bin/stickyctl" "$BIN_LINK"
    # the bench script, where the service user can read it (home folders are private)
    run install -m 0755 -o root -g root "$REPO/hardware/bench.py" "$PREFIX/bench.py"
}

# Print "name==version" for each of APT_PYTHON_DISTS that apt installed (the system Python sees
# the same system packages as the venv).
apt_constraints() {
    local dist version
    printf '# apt'"'"'s versions, written by hardware/install.sh: pip must not replace them\n'
    for dist in "${APT_PYTHON_DISTS[@]}"; do
        version=$("$SYSTEM_PYTHON" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$dist" 2>/dev/null) ||
            continue
        printf '%s==%s\n' "$dist" "$version"
    done
}

write_apt_constraints() {
    local pins
    pins=$(apt_constraints | grep -v '^#' | paste -sd ' ' -)
    say "pip constraints $APT_CONSTRAINTS: ${pins:-none (no apt numpy/simplejpeg/picamera2 here)}"
    if ((DRY_RUN)); then
        printf '[dry-run] write %s\n' "$APT_CONSTRAINTS"
        return
    fi
    printf '+ write %s\n' "$APT_CONSTRAINTS"
    apt_constraints >"$APT_CONSTRAINTS"
}

# Fail if pip shadowed an apt module in the venv (a numpy wheel breaks picamera2's simplejpeg).
check_apt_modules() {
    if ((DRY_RUN)); then
        printf '[dry-run] check that %s come from apt, not from %s\n' "${APT_MODULES[*]}" "$VENV"
        return
    fi
    local shadowed
    shadowed=$("$VENV/bin/python" - "$VENV" "${APT_MODULES[@]}" <<'PY'
import importlib.util, os, sys
venv = os.path.realpath(sys.argv[1])
for name in sys.argv[2:]:
    spec = importlib.util.find_spec(name)
    origin = os.path.realpath(spec.origin) if spec and spec.origin else ""
    if origin.startswith(venv + os.sep):
        print(f"{name} ({origin})")
PY
    ) || die "could not check the virtualenv's modules"
    if [[ -n $shadowed ]]; then
        die "pip installed into $VENV what apt must provide: $(echo "$shadowed" | tr '\n' ' ')- remove it: $VENV/bin/pip uninstall <package>"
    fi
    say "apt's modules in use: ${APT_MODULES[*]} (those present) come from apt, not from the virtualenv"
}

install_config() {
    if [[ -e $CONF_FILE ]]; then
        say "configuration $CONF_FILE: exists, kept (compare with $REPO/config/pi.toml)"
    else
        say "configuration $CONF_FILE: installing config/pi.toml"
        run install -m 0644 -o root -g root "$REPO/config/pi.toml" "$CONF_FILE"
    fi
}

# Write "user:password" to the credentials file, root:root 0600, never echoing the password.
write_credentials() {
    local user=$1 password=$2 tmp
    if ((DRY_RUN)); then
        printf '[dry-run] write %s (root:root 0600): API user %s\n' "$CRED_FILE" "$user"
        return
    fi
    printf '+ write %s (root:root 0600): API user %s\n' "$CRED_FILE" "$user"
    tmp=$(umask 077 && mktemp "$CONF_DIR/.api-credentials.XXXXXX")
    printf '%s:%s\n' "$user" "$password" >"$tmp"
    chown root:root "$tmp"
    chmod 0600 "$tmp"
    mv -f "$tmp" "$CRED_FILE"
}

install_credentials() {
    if [[ -e $CRED_FILE ]]; then
        say "credentials $CRED_FILE: exist, kept (root:root 0600)"
        run chown root:root "$CRED_FILE"
        run chmod 0600 "$CRED_FILE"
        return
    fi
    local user=$API_USER password=""
    if [[ -n $user ]]; then
        if [[ -n $API_PASSWORD_FILE ]]; then
            IFS= read -r password <"$API_PASSWORD_FILE" || true
        elif ((DRY_RUN)); then
            password="(asked for)"
        elif [[ -t 0 ]]; then
            IFS= read -r -s -p "API password for $user: " password
            printf '\n'
        else
            die "--api-user without --api-password-file needs a terminal to ask for the password"
        fi
        [[ -n $password ]] || die "empty API password"
    elif [[ -t 0 ]] && ((!DRY_RUN)); then
        read -r -p "Sticky Pi API username (empty: no API for now): " user
        if [[ -n $user ]]; then
            [[ $user != *:* ]] || die "the API username may not contain ':'"
            IFS= read -r -s -p "API password for $user: " password
            printf '\n'
            [[ -n $password ]] || die "empty API password"
        fi
    fi
    if [[ -n $user ]]; then
        say "credentials $CRED_FILE: writing them"
        write_credentials "$user" "$password"
    else
        # LoadCredential= fails the service if the file is missing: leave an empty one.
        say "credentials $CRED_FILE: none given; creating it empty (fill it in before adding [sync])"
        run install -m 0600 -o root -g root /dev/null "$CRED_FILE"
    fi
}

enable_interfaces() {
    ((ENABLE_INTERFACES)) || return 0
    if ! command -v raspi-config >/dev/null && ((!DRY_RUN)); then
        warn "raspi-config not found: enable I2C and SPI in /boot/firmware/config.txt (hardware/pi-os-setup.md)"
        return 0
    fi
    say "interfaces: enabling I2C and SPI (takes effect after a reboot)"
    run raspi-config nonint do_i2c 0
    run raspi-config nonint do_spi 0
}

install_service() {
    say "systemd unit: $UNIT_DEST"
    run install -m 0644 -o root -g root "$REPO/systemd/$SERVICE.service" "$UNIT_DEST"
    if ! have_systemd && ((!DRY_RUN)); then
        warn "systemd is not running here (a container or a chroot): the service is enabled, not started"
        run systemctl enable "$SERVICE"
        return
    fi
    local was_active=0
    if have_systemd && systemctl is-active --quiet "$SERVICE"; then
        was_active=1
    fi
    run systemctl daemon-reload
    if ((!START)); then
        run systemctl enable "$SERVICE"
    elif ((was_active)); then
        say "$SERVICE was running: restarting it on the new version"
        run systemctl enable "$SERVICE"
        run systemctl restart "$SERVICE"
    else
        run systemctl enable --now "$SERVICE"
    fi
}

main() {
    parse_args "$@"
    if ((DRY_RUN)); then
        say "dry run: printing every action, changing nothing"
    fi
    check_platform "$@"
    install_packages
    create_user
    create_dirs
    install_venv
    install_config
    install_credentials
    enable_interfaces
    install_service
    say "done. Check the trap: sudo stickyctl doctor   (logs: journalctl -u $SERVICE -f)"
}

# Sourced (by the tests), define the functions only.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
