#!/usr/bin/env bash
# Installs Fashion-MNIST from Debian's/Ubuntu's `dataset-fashion-mnist` package (the real data
# set, MIT licence) into /usr/share/datasets/fashion-mnist, where the examples find it offline.
# Does nothing if it is there already; uses sudo unless run as root.
set -euo pipefail
if [ -e /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
  echo "fashion-mnist: already in /usr/share/datasets/fashion-mnist"
  exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
echo "fashion-mnist: installed in /usr/share/datasets/fashion-mnist"
