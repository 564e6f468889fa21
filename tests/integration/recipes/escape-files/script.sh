#!/bin/sh
# Run by escape-trap-script.yaml after a trap on the image's /tmp: proves the
# copy of this script ran inside the image.
echo "script ran from $0" > /root/escape-script-ran
