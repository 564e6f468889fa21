#!/bin/sh
# Copied into the image and run by the `script` stage of kill.yaml.
set -e
echo "script ran" > /etc/amiforge-script
