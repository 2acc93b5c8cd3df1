#!/usr/bin/env bash
# Installs what building, running and testing Realtimeplot Server needs on Debian 12,
# and only what is missing. Uses sudo when not run as root.
set -euo pipefail

PACKAGES=(
  # build
  meson ninja-build pkg-config gcc gettext clang-format-14 clang-tidy-14 cppcheck gcovr
  libglib2.0-dev libsoup-3.0-dev libjson-glib-dev libgda-5.0-dev libgda-5.0-postgres
  libcurl4-gnutls-dev libpaho-mqtt-dev libsecret-1-dev libargon2-dev libpq-dev libldap-dev
  # tests
  python3 python3-paho-mqtt python3-psycopg2 python3-aiosmtpd python3-websocket valgrind wrk mosquitto mosquitto-clients curl sqlite3 locales
  dbus dbus-daemon gnome-keyring postgresql clang-14 libclang-rt-14-dev
  slapd ldap-utils openssl python3-prometheus-client python3-jsonschema
)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# German answers need a German locale on the machine (see STACK-NOTES "gettext per request")
if ! locale -a 2>/dev/null | grep -qi '^de_DE\.utf-\?8$'; then
  echo "setup: generating the de_DE.UTF-8 locale"
  $SUDO sed -i 's/^# *de_DE.UTF-8 UTF-8/de_DE.UTF-8 UTF-8/' /etc/locale.gen
  grep -q '^de_DE.UTF-8 UTF-8' /etc/locale.gen || echo 'de_DE.UTF-8 UTF-8' | $SUDO tee -a /etc/locale.gen >/dev/null
  $SUDO locale-gen >/dev/null
fi
