#!/usr/bin/env bash
# install-promtool.sh extracts promtool from Debian's `prometheus` package WITHOUT installing the
# package (installing it would add and start a Prometheus service): `apt-get download` fetches the
# .deb, `dpkg-deb -x` unpacks it into a scratch directory, and only usr/bin/promtool is kept, in
# ${XDG_CACHE_HOME:-$HOME/.cache}/databricks-token-operator/bin/promtool-<package version>, so later
# runs and CI reuse it. (This project's machines reach Debian's archive but no download site, so
# upstream release tarballs are not an option.)
#
# The Debian version is pinned (PROMTOOL_DEB_VERSION); when the archive no longer has that exact
# version (a point release replaced it), the current candidate is used with a warning.
#
# Prints the promtool binary's path on stdout (last line); progress goes to stderr.
# Usage: PROMTOOL="$(hack/install-promtool.sh)"; "${PROMTOOL}" check rules rules.yaml
set -euo pipefail

PROMTOOL_DEB_VERSION="${PROMTOOL_DEB_VERSION:-2.42.0+ds-5+deb12u1}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/databricks-token-operator/bin"

log() { echo "install-promtool: $*" >&2; }

# The pinned version's cache entry needs no apt at all.
PINNED_BIN="${CACHE_ROOT}/promtool-${PROMTOOL_DEB_VERSION}"
if [[ -x "${PINNED_BIN}" ]]; then
  echo "${PINNED_BIN}"
  exit 0
fi

for tool in apt-get apt-cache dpkg-deb flock; do
  if ! command -v "${tool}" >/dev/null 2>&1; then
    log "${tool} is needed (a Debian-based machine); install promtool yourself and put it on the PATH"
    exit 1
  fi
done

mkdir -p "${CACHE_ROOT}"
# One installer at a time: parallel test runs must not race on the same cache entry.
exec 9>"${CACHE_ROOT}/.promtool.lock"
flock 9
if [[ -x "${PINNED_BIN}" ]]; then
  echo "${PINNED_BIN}"
  exit 0
fi

# versions lists every version of `prometheus` the package lists know, one per line.
versions() {
  apt-cache madison prometheus 2>/dev/null | awk -F'|' '$1 ~ /prometheus/ {gsub(/ /, "", $2); print $2}'
}
candidate() {
  apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}'
}

cand="$(candidate)"
if ! versions | grep -qxF "${PROMTOOL_DEB_VERSION}"; then
  # Falling back on an earlier run left the candidate's promtool: no need to ask the archive again.
  if [[ -n "${cand}" && "${cand}" != "(none)" && -x "${CACHE_ROOT}/promtool-${cand}" ]]; then
    log "WARNING: prometheus ${PROMTOOL_DEB_VERSION} is not in the package lists; using the cached promtool of the candidate ${cand} (update PROMTOOL_DEB_VERSION in $0)"
    echo "${CACHE_ROOT}/promtool-${cand}"
    exit 0
  fi
  log "prometheus ${PROMTOOL_DEB_VERSION} is not in the package lists; refreshing them (apt-get update)..."
  apt-get update -qq >&2 || log "apt-get update failed; trying with the lists at hand"
  cand="$(candidate)"
fi

VERSION="${PROMTOOL_DEB_VERSION}"
if ! versions | grep -qxF "${VERSION}"; then
  if [[ -z "${cand}" || "${cand}" == "(none)" ]]; then
    log "the package lists have no 'prometheus' package; cannot get promtool"
    exit 1
  fi
  log "WARNING: prometheus ${VERSION} is no longer in the archive; using the candidate ${cand} instead (update PROMTOOL_DEB_VERSION in $0)"
  VERSION="${cand}"
fi

BIN="${CACHE_ROOT}/promtool-${VERSION}"
if [[ -x "${BIN}" ]]; then
  echo "${BIN}"
  exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT
log "downloading prometheus=${VERSION} from Debian (first run only; the package is not installed)..."
# apt-get download writes into the current directory. As root, apt drops privileges to _apt for
# downloads, which must be able to write there.
chmod 0777 "${WORK}"
(cd "${WORK}" && apt-get download -q "prometheus=${VERSION}" >&2)
deb="$(find "${WORK}" -maxdepth 1 -name 'prometheus_*.deb' -print -quit)"
if [[ -z "${deb}" ]]; then
  log "apt-get download left no prometheus_*.deb"
  exit 1
fi
dpkg-deb -x "${deb}" "${WORK}/root"
if [[ ! -x "${WORK}/root/usr/bin/promtool" ]]; then
  log "${deb##*/} holds no usr/bin/promtool"
  exit 1
fi
# Copy then rename, so that a concurrent reader never sees a half-written binary.
cp "${WORK}/root/usr/bin/promtool" "${BIN}.tmp"
chmod 0755 "${BIN}.tmp"
mv "${BIN}.tmp" "${BIN}"
log "$("${BIN}" --version 2>&1 | head -n1)"
log "cached in ${BIN}"
echo "${BIN}"
