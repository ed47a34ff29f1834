# Shared by the set-up scripts (bash): timed steps and a quiet, explicit apt-get.
#
#   step "what"            prints "<tag>: what" and starts the clock
#   step_done "result"     prints "<tag>:   result (12.3 s)"
#   apt_install PKG...     installs the packages that are missing, printing exactly which ones
#                          apt adds (dependencies included) and how long it took
#
# The Debian packages the tests use are named here once; the README's list is checked against
# these lines by tests/unit/test_setup_scripts.py.

# Serf (a real SWIM agent the benchmarks and one integration test measure against), iproute2 and
# iptables (the network-namespace fault tests).
TEST_PACKAGES="serf iproute2 iptables"
# podman and what the container tests need from it as root: runc (crun fails on this kernel's
# cgroups), netavark + aardvark-dns (a podman network with DNS names, like compose), iptables
# (netavark's firewall), debootstrap + debian-archive-keyring (the offline base image).
PODMAN_PACKAGES="podman runc netavark aardvark-dns iptables debootstrap debian-archive-keyring"
# Headless chromium and its WebDriver (the dashboard's browser tests, tests/browser/, driven by
# selenium from the dev extra).
BROWSER_PACKAGES="chromium chromium-driver"

STEP_TAG=${STEP_TAG:-$(basename "$0")}
_step_start=0

_now_ds() { # tenths of a second since the epoch, from bash's microsecond clock
  local t=${EPOCHREALTIME/./}
  echo $((10#$t / 100000))
}

step() {
  _step_start=$(_now_ds)
  echo "$STEP_TAG: $*"
}

step_done() {
  local ds=$(($(_now_ds) - _step_start))
  echo "$STEP_TAG:   $1 ($((ds / 10)).$((ds % 10)) s)"
}

# The packages among "$@" that dpkg does not list as installed (each once).
missing_packages() {
  local pkg
  for pkg in $(printf '%s\n' "$@" | awk '!seen[$0]++'); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
      printf '%s ' "$pkg"
  done
}

# Install what is missing of "$@" with no recommended packages and without upgrading packages
# that are already installed (apt would otherwise also upgrade siblings from the same source
# package, e.g. login and passwd next to uidmap). Output goes to a log shown only on failure.
apt_install() {
  local missing log new plan upgraded
  missing=$(missing_packages "$@")
  if [[ -z "$missing" ]]; then
    step_done "already installed: $*"
    return 0
  fi
  log=$(mktemp /tmp/pysup-apt.XXXXXX.log)
  local opts=(-y -q --no-install-recommends -o APT::Get::Upgrade-By-Source-Package=false
    -o Dpkg::Use-Pty=0)
  export DEBIAN_FRONTEND=noninteractive
  # Fresh lists: a new machine may have none, an old one stale ones (404s at download).
  echo "$STEP_TAG:   apt-get update"
  apt-get -q update >>"$log" 2>&1 || { _apt_failed "$log" update; return 1; }
  # What apt will do, from a dry run: `Inst pkg (ver ...)` adds, `Inst pkg [old] (new ...)` upgrades.
  # shellcheck disable=SC2086
  plan=$(apt-get "${opts[@]}" -s install $missing 2>>"$log") ||
    { _apt_failed "$log" "install (simulated)"; return 1; }
  new=$(awk '/^Inst / && $3 !~ /^\[/ {print $2}' <<<"$plan")
  upgraded=$(awk '/^Inst / && $3 ~ /^\[/ {print $2}' <<<"$plan")
  echo "$STEP_TAG:   apt-get install --no-install-recommends $missing"
  # shellcheck disable=SC2086
  echo "$STEP_TAG:   adds $(echo "$new" | wc -w) packages:" $new
  if [[ -n "$upgraded" ]]; then
    # shellcheck disable=SC2086
    echo "$STEP_TAG:   upgrades (a new package needs them newer):" $upgraded
  fi
  # shellcheck disable=SC2086
  apt-get "${opts[@]}" install $missing >>"$log" 2>&1 || { _apt_failed "$log" install; return 1; }
  rm -f "$log"
  step_done "installed"
}

_apt_failed() {
  echo "$STEP_TAG: apt-get $2 failed; last lines of $1:" >&2
  tail -n 20 "$1" >&2
}

# Run "$@" with its output appended to $1 (the first argument is the log), printing a line every
# HEARTBEAT_S seconds with the log's last line, so a long step never looks like a hang.
HEARTBEAT_S=${HEARTBEAT_S:-15}
run_logged() {
  local log=$1 pid elapsed=0 rc
  shift
  "$@" >>"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    # One-second naps, so a quick command ends the wait quickly.
    for ((i = 0; i < HEARTBEAT_S; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    kill -0 "$pid" 2>/dev/null || break
    elapsed=$((elapsed + HEARTBEAT_S))
    echo "$STEP_TAG:   ... ${elapsed} s: $(tail -n 1 "$log" | cut -c1-80)"
  done
  rc=0
  wait "$pid" || rc=$?
  return "$rc"
}
