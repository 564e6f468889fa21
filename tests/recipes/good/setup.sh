#!/bin/sh
# Run inside the image's chroot by tests/recipes/good/full.yaml.
set -eu
echo "configured by amiforge" > /etc/motd
