//! Making certificates with rcgen: a CA, and a serving certificate it signs. Pure apart from
//! key generation; PEM in, PEM out, so the results go straight into a Secret.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertPair {
    /// The certificate.
    pub cert_pem: Vec<u8>,
    /// The private key.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for CertPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("CertPair").finish_non_exhaustive()
    }
}

/// Why a certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// rcgen refused.
    #[error("generating a certificate")]
    Generate(#[from] rcgen::Error),
    /// The PEM holds no certificate.
    #[error("no certificate in the PEM")]
    NoCertificate,
    /// The certificate cannot be parsed.
    #[error("parsing a certificate")]
    Parse,
    /// A validity that does not fit the clock.
    #[error("validity out of range")]
    Range,
}

/// Backdating, so a verifier whose clock is a little behind accepts a fresh certificate.
pub(crate) const BACKDATE: Duration = Duration::from_secs(60);

/// A new self-signed CA valid for `validity` from `now`; its common name carries the issue
/// time so a successor CA never shares its subject.
pub fn issue_ca(validity: Duration, now: SystemTime) -> Result<CertPair, IssueError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let stamp = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, format!("hookguard-webhook-ca-{stamp}"));
    name.push(DnType::OrganizationName, "hookguard");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now.checked_sub(BACKDATE).ok_or(IssueError::Range)?.into();
    params.not_after = now.checked_add(validity).ok_or(IssueError::Range)?.into();
    let cert = params.self_signed(&key)?;
    Ok(CertPair {
        cert_pem: cert.pem().into_bytes(),
        key_pem: key.serialize_pem().into_bytes(),
    })
}

/// A serving certificate for `dns_names`, signed by the CA, valid for `validity` from `now`
/// but never past the CA's own end.
pub fn issue_serving(
    ca_cert_pem: &[u8],
    ca_key_pem: &[u8],
    dns_names: &[String],
    validity: Duration,
    now: SystemTime,
) -> Result<CertPair, IssueError> {
    let issuer = issuer(ca_cert_pem, ca_key_pem)?;
    let (_, ca_not_after) = self::validity(ca_cert_pem)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(dns_names.to_vec())?;
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        dns_names
            .first()
            .cloned()
            .unwrap_or_else(|| "hookguard-webhook".to_owned()),
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now.checked_sub(BACKDATE).ok_or(IssueError::Range)?.into();
    let not_after = now.checked_add(validity).ok_or(IssueError::Range)?;
    params.not_after = not_after.min(ca_not_after).into();
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertPair {
        cert_pem: cert.pem().into_bytes(),
        key_pem: key.serialize_pem().into_bytes(),
    })
}

/// The CA as an rcgen issuer: its subject and key identifier from the certificate (the
/// first of a bundle), its key from the PEM.
fn issuer(ca_cert_pem: &[u8], ca_key_pem: &[u8]) -> Result<Issuer<'static, KeyPair>, IssueError> {
    let der = first_der(ca_cert_pem)?;
    let key = KeyPair::from_pem(std::str::from_utf8(ca_key_pem).map_err(|_| IssueError::Parse)?)?;
    Ok(Issuer::from_ca_cert_der(&der, key)?)
}

/// Whether `ca_key_pem` is the key of the first certificate in `bundle`.
pub(crate) fn ca_key_matches(bundle: &[u8], ca_key_pem: &[u8]) -> bool {
    let Ok(der) = first_der(bundle) else {
        return false;
    };
    let Ok(key) = std::str::from_utf8(ca_key_pem)
        .map_err(|_| ())
        .and_then(|k| KeyPair::from_pem(k).map_err(|_| ()))
    else {
        return false;
    };
    x509_parser::parse_x509_certificate(&der).is_ok_and(|(_, cert)| {
        cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
    })
}

fn first_der(pem: &[u8]) -> Result<CertificateDer<'static>, IssueError> {
    rustls_pemfile::certs(&mut &pem[..])
        .next()
        .ok_or(IssueError::NoCertificate)?
        .map_err(|_| IssueError::Parse)
}

/// `notBefore` and `notAfter` of the first certificate in `pem`.
pub fn validity(pem: &[u8]) -> Result<(SystemTime, SystemTime), IssueError> {
    let der = first_der(pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|_| IssueError::Parse)?;
    let at = |seconds: i64| {
        let seconds = u64::try_from(seconds).map_err(|_| IssueError::Range)?;
        SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_secs(seconds))
            .ok_or(IssueError::Range)
    };
    let validity = cert.validity();
    Ok((
        at(validity.not_before.timestamp())?,
        at(validity.not_after.timestamp())?,
    ))
}

/// Whether the first certificate in `pem` names every one of `names` as a subject
/// alternative name (a DNS name, or an IP address written as one); unreadable: no.
pub fn names_all(pem: &[u8], names: &[String]) -> bool {
    use x509_parser::extensions::GeneralName;

    let Ok(der) = first_der(pem) else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return false;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return names.is_empty();
    };
    let has = |name: &String| {
        let ip: Option<std::net::IpAddr> = name.parse().ok();
        san.value.general_names.iter().any(|general| match general {
            GeneralName::DNSName(dns) => dns.eq_ignore_ascii_case(name),
            GeneralName::IPAddress(bytes) => ip.is_some_and(|ip| match ip {
                std::net::IpAddr::V4(v4) => *bytes == v4.octets(),
                std::net::IpAddr::V6(v6) => *bytes == v6.octets(),
            }),
            _ => false,
        })
    };
    names.iter().all(has)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies `serving` for `host` with the CA as the only root, as the API server does.
    fn verify(ca: &CertPair, serving: &CertPair, host: &str) -> Result<(), rustls::Error> {
        use rustls::client::danger::ServerCertVerifier as _;

        let mut roots = rustls::RootCertStore::empty();
        roots.add(first_der(&ca.cert_pem).unwrap()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let end = first_der(&serving.cert_pem).unwrap();
        verifier
            .verify_server_cert(
                &end,
                &[],
                &rustls::pki_types::ServerName::try_from(host).unwrap(),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .map(drop)
    }

    #[test]
    fn the_serving_certificate_chains_to_the_ca_and_names_the_service() {
        let now = SystemTime::now();
        let ca = issue_ca(Duration::from_secs(3600), now).unwrap();
        let names = vec!["svc.ns.svc".to_owned()];
        let serving = issue_serving(
            &ca.cert_pem,
            &ca.key_pem,
            &names,
            Duration::from_secs(60),
            now,
        )
        .unwrap();
        let (not_before, not_after) = validity(&serving.cert_pem).unwrap();
        assert!(not_before < now && not_after > now);
        assert!(not_after <= now + Duration::from_secs(61));
        assert!(ca_key_matches(&ca.cert_pem, &ca.key_pem));
        let other = issue_ca(Duration::from_secs(3600), now).unwrap();
        assert!(!ca_key_matches(&ca.cert_pem, &other.key_pem));

        // rustls, as the API server would, accepts it for the name with the CA as root.
        verify(&ca, &serving, "svc.ns.svc").unwrap();
    }

    #[test]
    fn a_development_url_host_is_named_as_a_dns_name_or_an_ip_address() {
        let now = SystemTime::now();
        let ca = issue_ca(Duration::from_secs(3600), now).unwrap();
        let names: Vec<String> = ["svc.ns.svc", "10.201.0.1", "dev.example.test"]
            .map(String::from)
            .to_vec();
        let serving = issue_serving(
            &ca.cert_pem,
            &ca.key_pem,
            &names,
            Duration::from_secs(60),
            now,
        )
        .unwrap();
        assert!(names_all(&serving.cert_pem, &names));
        assert!(names_all(&serving.cert_pem, &names[..1]));
        assert!(!names_all(&serving.cert_pem, &["10.201.0.2".to_owned()]));
        assert!(!names_all(&serving.cert_pem, &["other.ns.svc".to_owned()]));
        assert!(!names_all(b"not a certificate", &names));

        // The API server checks an IP host against an IP SAN, not a DNS one.
        for host in ["10.201.0.1", "dev.example.test"] {
            verify(&ca, &serving, host).unwrap_or_else(|e| panic!("{host}: {e}"));
        }
    }
}
