//! The node cluster's PKI, generated per start with `rcgen` (as the loopback control plane's
//! `certs.rs`, with the identities `hack/local-up-cluster.sh` gives a node): one CA; the API
//! server's serving certificate for its Service names, the node IP and the `kubernetes`
//! `ClusterIP`; admin (`system:masters`, also the API server's client certificate towards the
//! kubelet); the kubelet's client (`system:node:<name>` in `system:nodes`, which the Node
//! authorizer and `NodeRestriction` match to the node) and serving certificates (no CSR flow);
//! kube-proxy (`system:kube-proxy`, bound to `system:node-proxier` by default); and the
//! service-account signing key. Each identity also gets a kubeconfig.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::config::{KUBERNETES_SERVICE_IP, NODE_NAME};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// The PEM files and kubeconfigs written by [`write`].
#[derive(Debug, Clone)]
pub struct NodePki {
    /// The one CA: API server `--client-ca-file`, kubelet `clientCAFile`, what clients trust.
    pub ca_cert: PathBuf,
    /// The API server's serving certificate.
    pub apiserver: CertFiles,
    /// The admin client certificate (`system:masters`).
    pub admin: CertFiles,
    /// The kubelet's serving certificate (SAN: the node's name and IP).
    pub kubelet_serving: CertFiles,
    /// The service-account signing key (ECDSA P-256, PKCS#8).
    pub service_account_key: PathBuf,
    /// Its public key.
    pub service_account_public_key: PathBuf,
    /// The admin kubeconfig (also used by the controller manager and scheduler).
    pub admin_kubeconfig: PathBuf,
    /// The kubelet's kubeconfig.
    pub kubelet_kubeconfig: PathBuf,
    /// kube-proxy's kubeconfig.
    pub kube_proxy_kubeconfig: PathBuf,
}

/// Generates the PKI into `dir` with kubeconfigs pointing at `server`.
pub fn write(dir: &Path, node_ip: Ipv4Addr, server: &str) -> anyhow::Result<NodePki> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "hookguard-node-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let ca_cert = dir.join("ca.crt");
    fs::write(&ca_cert, ca.pem()).with_context(|| format!("writing {}", ca_cert.display()))?;

    let apiserver = issue(
        &ca,
        dir,
        "apiserver",
        "kube-apiserver",
        &[],
        [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "127.0.0.1",
            KUBERNETES_SERVICE_IP,
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([node_ip.to_string()])
        .collect(),
        true,
    )?;
    // The API server maps a client certificate's CN to the user and each O to a group.
    let admin = issue(
        &ca,
        dir,
        "admin",
        "hookguard-admin",
        &["system:masters"],
        vec![],
        false,
    )?;
    let kubelet = issue(
        &ca,
        dir,
        "kubelet",
        &format!("system:node:{NODE_NAME}"),
        &["system:nodes"],
        vec![],
        false,
    )?;
    let kube_proxy = issue(
        &ca,
        dir,
        "kube-proxy",
        "system:kube-proxy",
        &[],
        vec![],
        false,
    )?;
    let kubelet_serving = issue(
        &ca,
        dir,
        "kubelet-serving",
        NODE_NAME,
        &[],
        vec![NODE_NAME.to_owned(), node_ip.to_string()],
        true,
    )?;

    let service_account_key = KeyPair::generate()?;
    let sa_key = dir.join("sa.key");
    let sa_pub = dir.join("sa.pub");
    fs::write(&sa_key, service_account_key.serialize_pem())
        .with_context(|| format!("writing {}", sa_key.display()))?;
    fs::write(&sa_pub, service_account_key.public_key_pem())
        .with_context(|| format!("writing {}", sa_pub.display()))?;

    let pki = NodePki {
        admin_kubeconfig: dir.join("admin.kubeconfig"),
        kubelet_kubeconfig: dir.join("kubelet.kubeconfig"),
        kube_proxy_kubeconfig: dir.join("kube-proxy.kubeconfig"),
        ca_cert,
        apiserver,
        admin,
        kubelet_serving,
        service_account_key: sa_key,
        service_account_public_key: sa_pub,
    };
    for (path, user, files) in [
        (&pki.admin_kubeconfig, "admin", &pki.admin),
        (&pki.kubelet_kubeconfig, "kubelet", &kubelet),
        (&pki.kube_proxy_kubeconfig, "kube-proxy", &kube_proxy),
    ] {
        write_kubeconfig(path, server, &pki.ca_cert, user, files)?;
    }
    Ok(pki)
}

/// Issues a certificate signed by `ca` into `<dir>/<file>.{crt,key}`: a server one (with
/// `sans`) or a client one (CN the user, each O a group).
fn issue(
    ca: &CertifiedIssuer<'_, KeyPair>,
    dir: &Path,
    file: &str,
    cn: &str,
    orgs: &[&str],
    sans: Vec<String>,
    server_auth: bool,
) -> anyhow::Result<CertFiles> {
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name.push(DnType::CommonName, cn);
    for org in orgs {
        params
            .distinguished_name
            .push(DnType::OrganizationName, *org);
    }
    params.extended_key_usages = vec![if server_auth {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    let files = CertFiles {
        cert: dir.join(format!("{file}.crt")),
        key: dir.join(format!("{file}.key")),
    };
    fs::write(&files.cert, cert.pem())
        .with_context(|| format!("writing {}", files.cert.display()))?;
    fs::write(&files.key, key.serialize_pem())
        .with_context(|| format!("writing {}", files.key.display()))?;
    Ok(files)
}

/// A kubeconfig for `user` with a client certificate.
fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    user: &str,
    files: &CertFiles,
) -> anyhow::Result<()> {
    // JSON is YAML; serde_json gets the quoting right.
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "hookguard-node", "cluster": {
            "server": server,
            "certificate-authority": ca,
        }}],
        "users": [{"name": user, "user": {
            "client-certificate": files.cert,
            "client-key": files.key,
        }}],
        "contexts": [{"name": "hookguard-node", "context": {
            "cluster": "hookguard-node",
            "user": user,
            "namespace": "default",
        }}],
        "current-context": "hookguard-node",
    });
    fs::write(path, serde_json::to_vec_pretty(&config)?)
        .with_context(|| format!("writing {}", path.display()))
}
