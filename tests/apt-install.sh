#!/bin/sh
# Installs the Debian packages named that are not installed yet, running
# apt-get update first only when something is missing (make deps, make
# bench-deps).  Idempotent.
missing=""
for p in "$@"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
	    grep -q 'install ok installed' || missing="$missing $p"
done
if [ -z "$missing" ]; then
	echo "all $# packages installed"
	exit 0
fi
echo "installing:$missing"
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    --no-install-recommends $missing
