//! The node's configuration files, as `hack/local-up-cluster.sh` writes them but for one
//! private network namespace (see `shared/research/real-node.md` §9): containerd 1.6's
//! `config.toml`, the CNI bridge conflist, the kubelet's and kube-proxy's configuration, and
//! the `CoreDNS` addon manifest with its placeholders filled in. Pure: paths and addresses in,
//! text out.

use std::net::Ipv4Addr;
use std::path::Path;

/// The node's name; the kubelet's client certificate is `system:node:<NODE_NAME>`.
pub const NODE_NAME: &str = "hookguard-node";
/// The Service CIDR, routed inside the netns to a veth whose peer is down.
pub const SERVICE_CIDR: &str = "10.0.0.0/24";
/// The `kubernetes` Service's `ClusterIP`, the first address of [`SERVICE_CIDR`].
pub const KUBERNETES_SERVICE_IP: &str = "10.0.0.1";
/// `CoreDNS`'s `ClusterIP`, given to every pod as its nameserver.
pub const DNS_SERVICE_IP: &str = "10.0.0.10";
/// The pods' addresses (the CNI bridge's host-local range, kube-proxy's `clusterCIDR`).
pub const POD_CIDR: &str = "10.244.0.0/24";
/// The API server's port on the node IP.
pub const API_PORT: u16 = 6443;
/// kube-proxy's health port on the node IP.
pub const PROXY_HEALTH_PORT: u16 = 10256;

/// Paths one configuration file needs.
#[derive(Debug, Clone, Copy)]
pub struct Paths<'a> {
    /// The run folder.
    pub run: &'a Path,
    /// containerd's socket.
    pub containerd_socket: &'a Path,
    /// The folder holding the CNI conflist.
    pub cni_conf_dir: &'a Path,
}

/// containerd 1.6's configuration (version 2 schema). Everything it owns lives under the run
/// folder, including runc's state and the pods' netns mounts.
pub fn containerd_toml(paths: Paths<'_>, sandbox_image: &str) -> String {
    let run = paths.run.display();
    let socket = paths.containerd_socket.display();
    let cni = paths.cni_conf_dir.display();
    format!(
        r#"version = 2
root = "{run}/containerd/root"
state = "{run}/containerd/state"
[grpc]
  address = "{socket}"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{run}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # Root here lacks CAP_SYS_RESOURCE, so runc cannot give the pause container -998.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # The pods' netns bind mounts under the state folder rather than /run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
        Root = "{run}/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
    max_conf_num = 1
"#
    )
}

/// The CNI conflist: a bridge with hairpin mode (a pod reaches itself through its own
/// Service), no masquerading (nothing may leave the netns), and portmap for `hostPort`.
pub fn cni_conflist(network: &str, ipam_dir: &Path) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir,
                },
            },
            {
                "type": "portmap",
                "capabilities": {"portMappings": true},
                "externalSetMarkChain": "KUBE-MARK-MASQ",
            },
        ],
    })
}

/// Files the kubelet's configuration names.
#[derive(Debug, Clone, Copy)]
pub struct KubeletFiles<'a> {
    /// The CA that signs client certificates (API server → kubelet).
    pub ca_cert: &'a Path,
    /// The kubelet's serving certificate (SAN: the node IP).
    pub serving_cert: &'a Path,
    /// Its key.
    pub serving_key: &'a Path,
    /// The pods' log folder.
    pub pod_logs: &'a Path,
}

/// The kubelet's `KubeletConfiguration`.
pub fn kubelet_config(
    node_ip: Ipv4Addr,
    cgroup_root: &str,
    paths: Paths<'_>,
    files: KubeletFiles<'_>,
) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        // This machine has cgroup v1 (fixed by the workplace); 1.35 refuses it by default.
        "failCgroupV1": false,
        // containerd 1.6 cannot tell the kubelet its driver (no RuntimeConfig).
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": format!("/{cgroup_root}"),
        "cgroupsPerQOS": true,
        "containerRuntimeEndpoint": format!("unix://{}", paths.containerd_socket.display()),
        "failSwapOn": false,
        "address": node_ip.to_string(),
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": node_ip.to_string(),
        "healthzPort": 10248,
        "tlsCertFile": files.serving_cert,
        "tlsPrivateKeyFile": files.serving_key,
        "rotateCertificates": false,
        "serverTLSBootstrap": false,
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"enabled": true},
            "x509": {"clientCAFile": files.ca_cert},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": "cluster.local",
        "clusterDNS": [DNS_SERVICE_IP],
        // No host nameserver in pods: names outside cluster.local fail fast.
        "resolvConf": "",
        "podLogsDir": files.pod_logs,
        // Image GC off: images come from local tars and cannot be pulled again, and
        // containerd 1.6 does not pin the sandbox image.
        "imageGCHighThresholdPercent": 100,
        // The root disk has far less free than its size suggests; the defaults would evict.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "oomScoreAdj": 0,
        // Quicker status updates: the harness waits on them.
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
    })
}

/// kube-proxy's `KubeProxyConfiguration`: iptables mode, and no machine-wide sysctls.
pub fn kube_proxy_config(node_ip: Ipv4Addr, kubeconfig: &Path) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": kubeconfig},
        "hostnameOverride": NODE_NAME,
        "bindAddress": node_ip.to_string(),
        "healthzBindAddress": format!("{node_ip}:{PROXY_HEALTH_PORT}"),
        "metricsBindAddress": "127.0.0.1:10249",
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        // Otherwise kube-proxy sets route_localnet=1.
        "iptables": {"localhostNodePorts": false},
        // Otherwise it writes nf_conntrack_max, which is global and fatal when read-only.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "oomScoreAdj": 0,
    })
}

/// The `CoreDNS` addon manifest (`cluster/addons/dns/coredns/coredns.yaml.in` of the
/// Kubernetes release) for this cluster: its placeholders filled in, the local image with
/// `imagePullPolicy: Never`, and a Corefile without `prometheus`, `forward` and `loop` (there
/// is no upstream resolver: names outside the cluster fail fast).
pub fn coredns_manifest(template: &str, image: &str) -> anyhow::Result<String> {
    let mut out = Vec::new();
    let mut lines = template.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed.starts_with("forward . /etc/resolv.conf") {
            // Skip the block up to its closing brace.
            for inner in lines.by_ref() {
                if inner.trim() == "}" {
                    break;
                }
            }
            continue;
        }
        if trimmed.starts_with("prometheus ") || trimmed == "loop" {
            continue;
        }
        if trimmed.starts_with("image: ") {
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push(format!("{indent}image: {image}"));
            continue;
        }
        out.push(
            line.replace("dns_domain", "cluster.local")
                .replace("'dns_server'", DNS_SERVICE_IP)
                .replace("'dns_memory_limit'", "170Mi")
                .replace("imagePullPolicy: IfNotPresent", "imagePullPolicy: Never"),
        );
    }
    let manifest = out.join("\n");
    for needle in [
        "imagePullPolicy: Never",
        DNS_SERVICE_IP,
        "kubernetes cluster.local",
    ] {
        if !manifest.contains(needle) {
            anyhow::bail!(
                "the CoreDNS addon template no longer has the shape this harness edits \
                 ({needle:?} missing after filling it in)"
            );
        }
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "\
    Corefile: |
    .:53 {
        errors
        kubernetes dns_domain in-addr.arpa ip6.arpa {
            ttl 30
        }
        prometheus :9153
        forward . /etc/resolv.conf {
            max_concurrent 1000
        }
        cache 30
        loop
        reload
    }
      - name: coredns
        image: registry.k8s.io/coredns/coredns:v1.13.1
        imagePullPolicy: IfNotPresent
          limits:
            memory: 'dns_memory_limit'
  clusterIP: 'dns_server'
";

    #[test]
    fn coredns_manifest_drops_upstream_and_uses_the_local_image() {
        let manifest = coredns_manifest(TEMPLATE, "localhost/x/coredns:1").unwrap();
        assert!(!manifest.contains("forward"), "{manifest}");
        assert!(!manifest.contains("max_concurrent"), "{manifest}");
        assert!(!manifest.contains("prometheus"), "{manifest}");
        assert!(!manifest.contains("loop"), "{manifest}");
        assert!(manifest.contains("        cache 30"), "{manifest}");
        assert!(
            manifest.contains("        image: localhost/x/coredns:1\n"),
            "{manifest}"
        );
        assert!(manifest.contains("clusterIP: 10.0.0.10"), "{manifest}");
        assert!(manifest.contains("memory: 170Mi"), "{manifest}");
        assert!(manifest.contains("kubernetes cluster.local in-addr.arpa"));
    }

    #[test]
    fn coredns_manifest_fails_on_an_unknown_template() {
        assert!(coredns_manifest("kind: Nothing", "img").is_err());
    }
}
