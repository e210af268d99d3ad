#!/usr/bin/env bash
# Runs as root on the bake instance: installs the release tarball for one role
# (EDGEPIPE_ROLE=agent or gateway), its units and default configs, enables the
# services, and closes SSH for the image. Idempotent.
set -euo pipefail
role="${EDGEPIPE_ROLE:?agent or gateway}"
tarball="${EDGEPIPE_TARBALL:?path of the release tarball}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$tarball" -C "$work"
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'edgepipe-*' | head -1)
[ -n "$src" ] || { echo "no edgepipe-* directory in $tarball" >&2; exit 1; }

install -m 0644 "$src"/systemd/sysusers.d/edgepipe.conf /usr/lib/sysusers.d/edgepipe.conf
systemd-sysusers

install -d -m 0755 /usr/local/share/edgepipe /usr/local/share/doc/edgepipe
cp -r "$src/share/schemas" /usr/local/share/edgepipe/
cp -r "$src/share/doc/." /usr/local/share/doc/edgepipe/
install -m 0755 "$src/bin/label-lint" /usr/local/bin/label-lint

config() { # config FILE GROUP: a default config (root:GROUP 0640), kept if present
    local dest="/etc/$1"
    install -d -m 0755 "$(dirname "$dest")"
    if [ ! -e "$dest" ]; then install -m 0640 -g "$2" "$src/etc/$1" "$dest"; fi
}

case "$role" in
agent)
    install -m 0755 "$src/bin/edge-agent" /usr/local/bin/edge-agent
    config edge-agent/agent.yaml edge-agent
    install -d -m 0750 -g edge-agent /etc/edge-agent/tls
    install -m 0644 "$src/systemd/edge-agent.service" /etc/systemd/system/
    units=(edge-agent.service)
    ;;
gateway)
    install -m 0755 "$src/bin/edge-gateway" /usr/local/bin/edge-gateway
    config edge-gateway/gateway.yaml edge-gateway
    config edge-gateway/relay.yaml edge-relay
    install -d -m 0750 -g edge-gateway /etc/edge-gateway/tls
    install -m 0644 "$src/systemd/edge-gateway.service" "$src/systemd/edge-relay.service" /etc/systemd/system/
    units=(edge-gateway.service edge-relay.service)
    ;;
*)
    echo "EDGEPIPE_ROLE must be agent or gateway, not $role" >&2
    exit 1
    ;;
esac

systemctl daemon-reload
for u in "${units[@]}"; do
    systemd-analyze verify "/etc/systemd/system/$u"
    systemctl enable "$u"
done

# Operators reach hosts through SSM, never SSH: the image keeps the SSM agent and
# disables sshd; the bake user's key is removed. The running bake session is not cut.
systemctl enable amazon-ssm-agent
systemctl disable sshd.service
systemctl mask sshd.service
rm -f /home/ec2-user/.ssh/authorized_keys /root/.ssh/authorized_keys
