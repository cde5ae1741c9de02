#!/bin/sh
# version.sh: the Debian version of this checkout, for `make deb`.
#   tag vX.Y.Z on HEAD        -> X.Y.Z (vX.Y.Z-rc1 -> X.Y.Z~rc1)
#   N commits past vX.Y.Z     -> X.Y.Z+gitN.HASH
#   no vX.Y.Z tag             -> 0.0.0~gitYYYYMMDDhhmmss.HASH (commit time, UTC)
# Versions of later commits sort higher, as dpkg compares them.
set -eu
if d=$(git describe --tags --match 'v[0-9]*' --abbrev=7 2>/dev/null); then
	d=${d#v}
	case $d in
	*-*-g*)
		base=${d%-*-g*}
		rest=${d#"$base"-}
		echo "$(echo "$base" | tr - '~')+git${rest%-g*}.${rest#*-g}"
		;;
	*) echo "$d" | tr - '~' ;;
	esac
else
	ct=$(git log -1 --format=%ct)
	echo "0.0.0~git$(date -u -d "@$ct" +%Y%m%d%H%M%S).$(git rev-parse --short=7 HEAD)"
fi
