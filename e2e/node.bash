# shellcheck shell=bash
# e2e/node.bash — the real node of the local cluster (e2e/cluster up --with-node).
# Sourced by e2e/cluster; see docs/e2e.md ("The real node") for the design.
#
# One holder process owns a network and a mount namespace that this script
# creates. containerd, the kubelet and kube-proxy run inside both (nsenter),
# the pods behind a CNI bridge inside the network namespace. The host's own
# namespace gains no address, route, rule or bridge: the control plane keeps
# listening on 127.0.0.1 only, and `k8s netns-bridge` carries bytes between the
# two namespaces (kubelet/pods -> API server; API server -> kubelet through
# its egress selector; tests -> pods and Services through an HTTP proxy).
# `down` stops everything, removes the node's cgroups, restores the sysctls the
# kubelet writes, and fails unless the host's network, mounts and sysctls equal
# the snapshot taken at `up`.

NODE_NAME=mlctl-node
NODE_DIR=$RUN_DIR/node
NODE_IP=10.250.0.2
POD_SUBNET=10.245.0.0/24
POD_GATEWAY=10.245.0.1
NODE_PROXY_PORT=$((PORT_BASE + 91))
# A port tests listen on (127.0.0.1) that pods reach at $NODE_IP: the bridge
# forwards it (e.g. a hanging analysis endpoint for the fault tests).
NODE_TEST_PORT=$((PORT_BASE + 92))
NODE_TAINT=mlctl.io/real-node
# Images the node needs before any pod: the sandbox (pause) image and a small
# busybox for tests, built by scripts/images --e2e; and the shipped images.
PAUSE_IMAGE=localhost/mlctl-e2e/pause:3.10
# Global sysctls the kubelet sets (container_manager_linux.go, setupKernelTunables);
# the node's network sysctls live and die with its namespace.
NODE_HOST_SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
NODE_COMPONENTS=(netns-holder netns-bridge containerd kubelet kube-proxy)

in_node() { nsenter --target "$(pid_of netns-holder)" --net --mount -- "$@"; }

# ------------------------------------------------------------ host snapshot --

# Everything `down` must leave exactly as it found it. Interface counters,
# conntrack and the like are not state we could change; links, addresses,
# routes, rules, firewall, mounts, sysctls and cgroups are.
host_state() {
	echo "## links"
	ip -o link show | sed 's/^[0-9]*: //; s/ link\/.*//; s/ qlen [0-9]*//' | sort
	echo "## addresses"
	ip -o addr show | awk '{print $2, $3, $4}' | sort
	echo "## routes"
	ip route show table all | sort
	echo "## rules"
	ip rule show | sort
	echo "## iptables"
	iptables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//' || true
	ip6tables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//' || true
	echo "## nft"
	nft list ruleset 2>/dev/null || true
	echo "## mounts"
	awk '{print $5, $9}' /proc/self/mountinfo | sort
	echo "## sysctls"
	local s
	for s in "${NODE_HOST_SYSCTLS[@]}" net.ipv4.ip_forward net.ipv4.conf.all.route_localnet \
		net.bridge.bridge-nf-call-iptables net.netfilter.nf_conntrack_max; do
		printf '%s = %s\n' "$s" "$(sysctl -n "$s" 2>/dev/null || echo '-')"
	done
	echo "## cgroups"
	local h
	for h in /sys/fs/cgroup/*/; do
		[[ -d $h/kubepods ]] && echo "${h}kubepods"
	done
	echo "## paths"
	for h in /var/lib/kubelet /var/lib/cni /run/containerd /run/netns /var/log/containers /var/log/pods /etc/cni; do
		[[ -e $h ]] && echo "$h"
	done
	return 0
}

# ------------------------------------------------------------ credentials ----

gen_node_pki() {
	[[ -f $PKI/.node-complete ]] && return 0
	step "generating the node's certificates in $PKI"
	(
		cd "$PKI"
		issue kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth ""
		issue kubelet-serving "/CN=$NODE_NAME" serverAuth "IP:$NODE_IP,DNS:$NODE_NAME"
		issue kube-proxy "/CN=system:kube-proxy" clientAuth ""
		# The API server's identity towards kubelets (logs, exec, port-forward).
		issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth ""
		rm -f ./*.csr ca.srl
	)
	local c
	for c in kubelet kube-proxy; do write_kubeconfig "$c"; done
	touch "$PKI/.node-complete"
}

# The API server flags that make a real node work. Only with --with-node: the
# `kubernetes` Service gets the node-side address of the bridge as its endpoint
# (pods reach the API server through kube-proxy, then the bridge), and every
# connection the API server opens to a node, pod or Service goes through the
# bridge's proxy, which dials inside the node's namespace.
node_apiserver_flags() {
	cat >"$NODE_DIR/egress.yaml" <<EOF
apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: $NODE_DIR/egress.sock
EOF
	printf '%s\n' \
		--advertise-address="$NODE_IP" \
		--endpoint-reconciler-type=lease \
		--egress-selector-config-file="$NODE_DIR/egress.yaml" \
		--kubelet-preferred-address-types=InternalIP,Hostname \
		--kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
		--kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority="$PKI/ca.crt"
}

# ------------------------------------------------------------ namespaces -----

# The holder: `unshare` makes the two namespaces and execs a shell that sets
# up the mounts, then waits. Its PID names the namespaces for nsenter; when it
# and everything that entered them are gone, the kernel removes both, with
# every mount made inside.
write_holder() {
	cat >"$NODE_DIR/holder.sh" <<'EOF'
#!/bin/sh
# Runs inside the node's new network and mount namespaces (see e2e/node.bash).
set -eu
node_dir=$1
# Mounts made by containerd and the kubelet propagate among themselves, never
# to the host (unshare made every mount private first).
mount --make-rshared /
# Paths the kubelet, containerd and the CNI plugins use whatever their flags
# say: fresh tmpfs over /run and /var/lib, the logs in the run directory.
mount -t tmpfs -o mode=0755 mlctl-node-run /run
mount -t tmpfs -o mode=0755 mlctl-node-varlib /var/lib
mkdir -p /run/netns /run/containerd /var/lib/kubelet /var/lib/cni "$node_dir/log"
mount --bind "$node_dir/log" /var/log
ip link set lo up
ip link add mlctl0 type veth peer name mlctl1
ip addr add "$2/24" dev mlctl0
ip link set mlctl0 up
ip link set mlctl1 up
ip route add default dev mlctl0
echo ready >"$node_dir/holder.ready"
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
EOF
	chmod +x "$NODE_DIR/holder.sh"
}

start_holder() {
	rm -f "$NODE_DIR/holder.ready"
	start_component netns-holder unshare --net --mount --propagation private -- \
		/bin/sh "$NODE_DIR/holder.sh" "$NODE_DIR" "$NODE_IP"
	local deadline=$((SECONDS + 20))
	until [[ -f $NODE_DIR/holder.ready ]]; do
		started_alive netns-holder || {
			cat "$LOG_DIR/netns-holder.log" >&2
			die "the node's namespaces could not be set up (log above)"
		}
		((SECONDS < deadline)) || die "the node's namespaces were not ready after 20s"
		sleep 0.1
	done
	# Bridged pod traffic must pass iptables for Service NAT (a per-namespace
	# setting since Linux 5.3; the host's value is untouched).
	in_node sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1
}

start_bridge() {
	rm -f "$NODE_DIR/egress.sock"
	start_component netns-bridge "$K8S_BIN/netns-bridge" \
		--netns="/proc/$(pid_of netns-holder)/ns/net" \
		--forward="ns:0.0.0.0:$APISERVER_PORT=host:127.0.0.1:$APISERVER_PORT" \
		--forward="ns:0.0.0.0:$PROMETHEUS_PORT=host:127.0.0.1:$PROMETHEUS_PORT" \
		--forward="ns:0.0.0.0:$NODE_TEST_PORT=host:127.0.0.1:$NODE_TEST_PORT" \
		--proxy-unix="$NODE_DIR/egress.sock" \
		--proxy-tcp="127.0.0.1:$NODE_PROXY_PORT"
	local deadline=$((SECONDS + 10))
	until [[ -S $NODE_DIR/egress.sock ]]; do
		started_alive netns-bridge || die "netns-bridge exited: $(tail -5 "$LOG_DIR/netns-bridge.log")"
		((SECONDS < deadline)) || die "netns-bridge did not come up in 10s"
		sleep 0.1
	done
}

# ------------------------------------------------------------ containerd -----

start_containerd() {
	mkdir -p "$NODE_DIR/containerd" "$NODE_DIR/cni"
	cat >"$NODE_DIR/cni/10-mlctl.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "mlctl",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
	cat >"$NODE_DIR/containerd.toml" <<EOF
# containerd for the real node (e2e/node.bash): everything under the run directory.
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "$NODE_DIR/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # This VM lacks CAP_SYS_RESOURCE: nothing may lower an OOM score.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni"
EOF
	start_component containerd nsenter --target "$(pid_of netns-holder)" --net --mount -- \
		containerd --config "$NODE_DIR/containerd.toml" --log-level warn
	local deadline=$((SECONDS + 30))
	until ctr_node version >/dev/null 2>&1; do
		started_alive containerd || die "containerd exited: $(tail -20 "$LOG_DIR/containerd.log")"
		((SECONDS < deadline)) || die "containerd did not answer in 30s (log: $LOG_DIR/containerd.log)"
		sleep 0.2
	done
}

ctr_node() { ctr --address "$NODE_DIR/containerd.sock" --namespace k8s.io "$@"; }

# Imports every OCI archive under target/images (the shipped images) and
# target/images/e2e (pause, busybox), building them first when missing. Each
# archive names its image (org.opencontainers.image.ref.name), so the pods of
# the chart's default tags find them without a registry.
import_images() {
	local root images
	root=$(dirname "$SCRIPT_DIR")
	images=$root/target/images
	# Built when missing; `make test` rebuilds them first (scripts/test), so a
	# test never runs yesterday's binaries. After a change by hand: make images.
	# MLCTL_E2E_BUILD_IMAGES=0 imports only what exists (debugging the node).
	if [[ ${MLCTL_E2E_BUILD_IMAGES:-1} == 1 ]] && ! compgen -G "$images/*.oci.tar" >/dev/null; then
		step "building the images (make images) for the real node"
		"$root/scripts/images" >&2 || die "scripts/images failed"
	fi
	if ! compgen -G "$images/e2e/*.oci.tar" >/dev/null; then
		step "building the real node's test images (scripts/images --e2e)"
		"$root/scripts/images" --e2e >&2 || die "scripts/images --e2e failed"
	fi
	local f
	for f in "$images"/*.oci.tar "$images"/e2e/*.oci.tar; do
		[[ -f $f ]] || continue
		ctr_node images import --no-unpack=false "$f" >/dev/null 2>"$NODE_DIR/import.err" ||
			die "ctr images import $f failed: $(cat "$NODE_DIR/import.err")"
	done
	local names
	names=$(ctr_node images ls -q) || die "ctr images ls failed"
	grep -qxF "$PAUSE_IMAGE" <<<"$names" || die "the pause image $PAUSE_IMAGE is not in $images/e2e"
}

# ------------------------------------------------------------ kubelet --------

start_kubelet() {
	mkdir -p "$NODE_DIR/kubelet"
	# No cluster DNS here: pods get a resolv.conf that resolves nothing.
	echo "options ndots:1" >"$NODE_DIR/resolv.conf"
	cat >"$NODE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
containerRuntimeEndpoint: unix://$NODE_DIR/containerd.sock
cgroupDriver: cgroupfs
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
resolvConf: $NODE_DIR/resolv.conf
maxPods: 40
serializeImagePulls: false
# Images are imported, never pulled: garbage collection must not remove them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 200Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
registerWithTaints:
- {key: $NODE_TAINT, value: "true", effect: NoSchedule}
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
shutdownGracePeriod: 0s
EOF
	start_component kubelet nsenter --target "$(pid_of netns-holder)" --net --mount -- \
		"$K8S_BIN/kubelet" \
		--config="$NODE_DIR/kubelet.yaml" \
		--kubeconfig="$RUN_DIR/kubelet.kubeconfig" \
		--root-dir=/var/lib/kubelet \
		--hostname-override="$NODE_NAME" \
		--node-ip="$NODE_IP" \
		--node-labels="$NODE_TAINT=true,type=real" \
		--v=1
}

start_kube_proxy() {
	cat >"$NODE_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $RUN_DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_SUBNET
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# No global sysctl writes: conntrack sizing and timeouts stay the kernel's.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false, masqueradeAll: false}
EOF
	start_component kube-proxy nsenter --target "$(pid_of netns-holder)" --net --mount -- \
		"$K8S_BIN/kube-proxy" --config="$NODE_DIR/kube-proxy.yaml" --v=1
}

# The kubeconfigs point at 127.0.0.1:<apiserver port> inside the namespace,
# which the bridge forwards to the host's loopback.

# ------------------------------------------------------------ up / down ------

node_healthy() {
	case $1 in
	netns-holder) [[ -f $NODE_DIR/holder.ready ]] ;;
	netns-bridge) [[ -S $NODE_DIR/egress.sock ]] ;;
	containerd) ctr_node version >/dev/null 2>&1 ;;
	kubelet) [[ $(in_node curl -fsS --max-time 3 http://127.0.0.1:10248/healthz 2>/dev/null) == ok ]] ;;
	kube-proxy) in_node curl -fsS --max-time 3 http://127.0.0.1:10256/healthz >/dev/null 2>&1 ;;
	esac
}

node_up() {
	local t
	t=$(now_ms)
	# containerd creates image snapshots with its umask: under 077 (a hardened
	# login, or a umask leaked into this script) the layers' directories are
	# 0700 and a non-root container cannot read its own root filesystem
	# ("libgcc_s.so.1: Permission denied", "exec: stat ...: permission denied").
	umask 022
	scripts_root=$(dirname "$SCRIPT_DIR")
	"$scripts_root/scripts/install-debs" node || die "installing the node's Debian packages failed"
	mkdir -p "$NODE_DIR"
	# Pod cgroups live in the host's hierarchies under a fixed name: a second
	# kubelet (another cluster's node) would share and then remove them.
	! compgen -G "/sys/fs/cgroup/*/kubepods" >/dev/null ||
		die "a kubelet's cgroups (/sys/fs/cgroup/*/kubepods) already exist: another real node runs (or a crashed one left them; e2e/cluster down of that cluster removes them)"
	[[ -f $NODE_DIR/host-before.txt ]] || host_state >"$NODE_DIR/host-before.txt"
	local s
	for s in "${NODE_HOST_SYSCTLS[@]}"; do
		printf '%s=%s\n' "$s" "$(sysctl -n "$s")"
	done >"$NODE_DIR/sysctls-before.txt"
	gen_node_pki
	write_holder
	start_holder
	start_bridge
	start_containerd
	import_images
	start_kubelet
	start_kube_proxy
	local deadline=$((SECONDS + 90))
	until [[ $(kctl get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]; do
		started_alive kubelet || die "the kubelet exited: $(tail -20 "$LOG_DIR/kubelet.log")"
		if ((SECONDS >= deadline)); then
			tail -n 30 "$LOG_DIR/kubelet.log" >&2
			die "the real node did not become Ready in 90s (log: $LOG_DIR/kubelet.log)"
		fi
		sleep 0.5
	done
	deadline=$((SECONDS + 30))
	until node_healthy kube-proxy; do
		started_alive kube-proxy || die "kube-proxy exited: $(tail -20 "$LOG_DIR/kube-proxy.log")"
		((SECONDS < deadline)) || die "kube-proxy not healthy after 30s"
		sleep 0.2
	done
	say "    real node $NODE_NAME Ready after $(secs_since "$t")"
}

# Kills every process in the node's pod cgroups (containers survive their
# containerd; their shims name the run directory and are stopped as leftovers).
kill_pods() {
	local h pids
	for h in /sys/fs/cgroup/pids/kubepods /sys/fs/cgroup/memory/kubepods; do
		[[ -d $h ]] || continue
		pids=$(find "$h" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u) || true
		# shellcheck disable=SC2086
		[[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
	done
}

remove_node_cgroups() {
	local h
	for h in /sys/fs/cgroup/*/kubepods; do
		[[ -d $h ]] || continue
		# Deepest first: a cgroup directory is removed with rmdir once empty.
		find "$h" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
}

node_down() {
	# Only a node this run directory started (its snapshot is removed once
	# `down` has verified the host): never another cluster's pods or cgroups.
	[[ -f $NODE_DIR/host-before.txt ]] || return 0
	stop_component kube-proxy
	# The kubelet before the API server: an API server with a kubelet attached
	# was seen ignoring SIGTERM for over 30 s.
	stop_component kubelet
	kill_pods
	stop_component containerd
	local left
	left=$(leftovers | grep -v -e "^$(pid_of netns-holder 2>/dev/null || echo x)\$" -e "^$(pid_of netns-bridge 2>/dev/null || echo x)\$" || true)
	# shellcheck disable=SC2086
	[[ -z $left ]] || kill -KILL $left 2>/dev/null || true
	stop_component netns-bridge
	stop_component netns-holder
	kill_pods
	local i
	for ((i = 0; i < 50; i++)); do
		remove_node_cgroups
		compgen -G "/sys/fs/cgroup/*/kubepods" >/dev/null || break
		sleep 0.1
	done
	if [[ -f $NODE_DIR/sysctls-before.txt ]]; then
		local line
		while IFS= read -r line; do
			[[ $(sysctl -n "${line%%=*}") == "${line#*=}" ]] || sysctl -qw "$line"
		done <"$NODE_DIR/sysctls-before.txt"
	fi
}

# Fails (and shows the difference) unless the host is as `up` found it.
node_verify_host() {
	[[ -f $NODE_DIR/host-before.txt ]] || return 0
	host_state >"$NODE_DIR/host-after.txt"
	if ! diff -u "$NODE_DIR/host-before.txt" "$NODE_DIR/host-after.txt" >"$NODE_DIR/host.diff"; then
		cat "$NODE_DIR/host.diff" >&2
		die "the host differs from before 'up' (above; $NODE_DIR/host.diff)"
	fi
	rm -f "$NODE_DIR/host-before.txt"
	say "    host network, mounts, sysctls and cgroups as before 'up'"
}
