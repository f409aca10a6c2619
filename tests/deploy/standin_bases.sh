#!/usr/bin/env bash
# Local stand-ins for the two base images the Dockerfiles start FROM, for machines that cannot
# pull from a container registry: a minimal Debian bookworm (debootstrap from Debian's package
# mirror) with this machine's CPython 3.11 under /usr/local, the layout of python:3.11-slim
# (python, pip and site-packages under /usr/local), tagged docker.io/library/python:3.11-slim;
# and the same with this machine's Node.js 20 and npm added, tagged docker.io/library/node:20-slim.
# Both trust the certificate authorities this machine adds (/usr/local/share/ca-certificates:
# the network's TLS proxy, where there is one) and point pip and npm at that bundle, which the
# real images need not do. An image already built from this same recipe (label
# org.imgsearch.standin) is kept.
# Usage: standin_bases.sh [PYTHON]   (PYTHON: a CPython 3.11 interpreter, default python3)
set -euo pipefail
# python:3.11-slim's files are world-readable: the services run as uid 10001 and must read
# /usr/local whatever umask the machine building the stand-in has.
umask 022
PY=${1:-python3}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PY_IMAGE=docker.io/library/python:3.11-slim
NODE_IMAGE=docker.io/library/node:20-slim

py_prefix=$("$PY" -c 'import sys; print(sys.base_prefix)')
py_version=$("$PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
case "$py_version" in 3.11.*) ;; *) echo "need CPython 3.11, $PY is $py_version" >&2; exit 2;; esac
node_bin=$(command -v node)
node_version=$("$node_bin" --version)
case "$node_version" in v20.*) ;; *) echo "need Node.js 20, node is $node_version" >&2; exit 2;; esac
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
recipe=$( (cat "$0"; echo "$py_version $node_version") | sha256sum | cut -c1-16)

label() { podman image inspect --format '{{ index .Labels "org.imgsearch.standin" }}' "$1" 2>/dev/null || true; }
if [ "$(label $PY_IMAGE)" = "$recipe" ] && [ "$(label $NODE_IMAGE)" = "$recipe" ]; then
  echo "stand-in base images are up to date ($recipe)"; exit 0
fi

work=$(mktemp -d /var/tmp/imgsearch-standin.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
# The runtime libraries python:3.11-slim carries for CPython's extension modules.
debootstrap --variant=minbase \
  --include=ca-certificates,netbase,tzdata,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,libreadline8,libncursesw6,libuuid1,libgdbm6,zlib1g,libexpat1 \
  bookworm "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; exit 1; }

# CPython under /usr/local, without the host's site-packages.
mkdir -p "$root/usr/local/bin" "$root/usr/local/lib"
cp -a "$py_prefix/bin/python3.11" "$root/usr/local/bin/"
cp -a "$py_prefix"/lib/libpython3.11.so* "$py_prefix/lib/libpython3.so" "$root/usr/local/lib/"
tar -C "$py_prefix/lib" --exclude='python3.11/site-packages/*' --exclude='python3.11/test' \
    --exclude='__pycache__' -cf - python3.11 | tar -C "$root/usr/local/lib" -xf -
for name in python3 python; do ln -sf python3.11 "$root/usr/local/bin/$name"; done
chroot "$root" /sbin/ldconfig
chroot "$root" /usr/local/bin/python3.11 -m ensurepip --default-pip >/dev/null
ln -sf pip3 "$root/usr/local/bin/pip"
chroot "$root" /usr/local/bin/python -c 'import ssl, sqlite3, ctypes, lzma, bz2, zlib, uuid; import pip'
# This machine's extra certificate authorities, for pip and npm inside the builds.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" /usr/sbin/update-ca-certificates >/dev/null
fi
chmod -R a+rX "$root/usr/local"
rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin "$root/var/log/"*

changes=(--change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin'
         --change 'ENV LANG=C.UTF-8' --change "LABEL org.imgsearch.standin=$recipe"
         --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt'
         --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt')
tar -C "$root" -cf - . | podman import "${changes[@]}" --change 'CMD ["python3"]' - "$PY_IMAGE"

# Node.js 20 and npm under /usr/local, as node:20-slim has them.
cp -a "$node_bin" "$root/usr/local/bin/node"
mkdir -p "$root/usr/local/lib/node_modules"
cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
chroot "$root" /usr/local/bin/node /usr/local/lib/node_modules/npm/bin/npm-cli.js --version >/dev/null
tar -C "$root" -cf - . | podman import "${changes[@]}" --change 'CMD ["node"]' - "$NODE_IMAGE"
echo "stand-in base images built ($recipe): $PY_IMAGE $NODE_IMAGE"
