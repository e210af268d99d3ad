//! Who is calling: the tenant (and host) a request is from.
//!
//! From the client certificate: a URI SAN `spiffe://<trust domain>/tenant/<tenant>/<host…>`
//! under the configured trust domain, else the first subject pattern (`CN=gs-*`) that
//! matches. From a bearer token whose SHA-256 is listed. A tenant header
//! (`X-Scope-OrgID`, Mimir's) may only repeat the tenant the identity gives.

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::Identities;

/// The header a client may name its tenant in (Mimir's).
pub const TENANT_HEADER: &str = "x-scope-orgid";

/// A caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The tenant.
    pub tenant: String,
    /// The host (the certificate's CN or SPIFFE path), for the Kinesis partition key.
    pub host: String,
}

/// Why a request has no tenant.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No certificate that maps to a tenant, and no known token.
    #[error(
        "no identity: the client certificate maps to no tenant and no known bearer token was given"
    )]
    Unknown,
    /// A tenant header names another tenant.
    #[error(
        "the {TENANT_HEADER} header names tenant {named:?}, but this identity is tenant {actual:?}"
    )]
    HeaderMismatch {
        /// The header's tenant.
        named: String,
        /// The identity's tenant.
        actual: String,
    },
}

/// What a client certificate names, read once when its connection is set up: every
/// request on the connection is identified from these (against the identities in force
/// then, so a reload applies to open connections) without parsing the certificate again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertNames {
    /// The subject's first common name ("" if none).
    pub cn: String,
    /// The URI subject alternative names, in order.
    pub uris: Vec<String>,
}

impl CertNames {
    /// The names in `der` (the client's leaf certificate); `None` if it does not parse,
    /// so that it identifies no one.
    pub fn from_der(der: &[u8]) -> Option<CertNames> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let uris = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::URI(uri) => Some(uri.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .unwrap_or_default()
            .to_string();
        Some(CertNames { cn, uris })
    }
}

/// The tenant of a request: from `cert` (the names in the client's leaf), else from the
/// `authorization` header; then checked against the tenant header.
pub fn identify(
    ids: &Identities,
    cert: Option<&CertNames>,
    authorization: Option<&str>,
    tenant_header: Option<&str>,
) -> Result<Identity, IdentityError> {
    let identity = cert
        .and_then(|names| from_certificate(ids, names))
        .or_else(|| authorization.and_then(|a| from_token(ids, a)))
        .ok_or(IdentityError::Unknown)?;
    if let Some(named) = tenant_header.map(str::trim).filter(|t| !t.is_empty())
        && named != identity.tenant
    {
        return Err(IdentityError::HeaderMismatch {
            named: named.to_string(),
            actual: identity.tenant,
        });
    }
    Ok(identity)
}

fn from_certificate(ids: &Identities, names: &CertNames) -> Option<Identity> {
    if let Some(domain) = &ids.spiffe_trust_domain
        && let Some(id) = names
            .uris
            .iter()
            .find_map(|uri| spiffe_identity(domain, uri))
    {
        return Some(id);
    }
    let subject = format!("CN={}", names.cn);
    ids.subjects
        .iter()
        .find(|(pattern, _)| glob(pattern, &subject))
        .map(|(_, tenant)| Identity {
            tenant: tenant.clone(),
            host: names.cn.clone(),
        })
}

/// `spiffe://<domain>/tenant/<tenant>/<host…>`.
fn spiffe_identity(domain: &str, uri: &str) -> Option<Identity> {
    let rest = uri.strip_prefix("spiffe://")?;
    let (d, path) = rest.split_once('/')?;
    if d != domain {
        return None;
    }
    let path = path.strip_prefix("tenant/")?;
    let (tenant, host) = match path.split_once('/') {
        Some((t, h)) => (t, h),
        None => (path, ""),
    };
    if tenant.is_empty() {
        return None;
    }
    Some(Identity {
        tenant: tenant.to_string(),
        host: host.to_string(),
    })
}

fn from_token(ids: &Identities, authorization: &str) -> Option<Identity> {
    let token = authorization.strip_prefix("Bearer ")?.trim();
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    // Compared in constant time: the list is small and a timing leak would be cheap to
    // avoid.
    ids.tokens
        .iter()
        .find(|(hash, _)| ring_constant_eq(hash, digest.as_ref()))
        .map(|(_, tenant)| Identity {
            tenant: tenant.clone(),
            host: String::new(),
        })
}

fn ring_constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    if parts.is_empty() {
        return rest.is_empty();
    }
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Identities {
        let token = ring::digest::digest(&ring::digest::SHA256, b"s3cret");
        let mut hash = [0u8; 32];
        hash.copy_from_slice(token.as_ref());
        Identities {
            spiffe_trust_domain: Some("obs.internal".into()),
            subjects: vec![("CN=gs-*".into(), "game".into())],
            tokens: vec![(hash, "studio-x".into())],
        }
    }

    #[test]
    fn spiffe_paths() {
        assert_eq!(
            spiffe_identity("obs.internal", "spiffe://obs.internal/tenant/game/gs-17"),
            Some(Identity {
                tenant: "game".into(),
                host: "gs-17".into()
            })
        );
        assert_eq!(
            spiffe_identity("obs.internal", "spiffe://evil.example/tenant/game/x"),
            None
        );
        assert_eq!(
            spiffe_identity("obs.internal", "spiffe://obs.internal/workload/x"),
            None
        );
        assert_eq!(
            spiffe_identity("obs.internal", "spiffe://obs.internal/tenant//x"),
            None
        );
    }

    fn cert_der(cn: &str, uris: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        for uri in uris {
            params.subject_alt_names.push(rcgen::SanType::URI(
                uri.to_string().try_into().expect("uri"),
            ));
        }
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn certificate_names_are_read_once_and_matched_against_the_identities_in_force() {
        let der = cert_der(
            "gs-17",
            &[
                "spiffe://evil.example/tenant/noisy/gs-17",
                "spiffe://obs.internal/tenant/game/gs-17",
            ],
        );
        let names = CertNames::from_der(&der).expect("parses");
        assert_eq!(names.cn, "gs-17");
        assert_eq!(names.uris.len(), 2);
        // The SPIFFE name under the trust domain wins over the subject pattern.
        let id = identify(&ids(), Some(&names), None, None).expect("identified");
        assert_eq!((id.tenant.as_str(), id.host.as_str()), ("game", "gs-17"));
        // Another trust domain after a reload: the subject pattern decides.
        let mut other = ids();
        other.spiffe_trust_domain = Some("elsewhere.internal".into());
        other.subjects = vec![("CN=gs-*".into(), "fleet".into())];
        let id = identify(&other, Some(&names), None, None).expect("identified");
        assert_eq!((id.tenant.as_str(), id.host.as_str()), ("fleet", "gs-17"));
        // A name no pattern matches identifies no one, unless a token does.
        let stranger = CertNames::from_der(&cert_der("laptop", &[])).expect("parses");
        assert_eq!(
            identify(&ids(), Some(&stranger), None, None),
            Err(IdentityError::Unknown)
        );
        assert!(identify(&ids(), Some(&stranger), Some("Bearer s3cret"), None).is_ok());
        // Bytes that are not a certificate name nothing.
        assert_eq!(CertNames::from_der(b"not a certificate"), None);
    }

    #[test]
    fn tokens_and_headers() {
        let ids = ids();
        let id = identify(&ids, None, Some("Bearer s3cret"), None).expect("token");
        assert_eq!(id.tenant, "studio-x");
        assert_eq!(
            identify(&ids, None, Some("Bearer wrong"), None),
            Err(IdentityError::Unknown)
        );
        assert!(matches!(
            identify(&ids, None, Some("Bearer s3cret"), Some("game")),
            Err(IdentityError::HeaderMismatch { .. })
        ));
        assert!(identify(&ids, None, Some("Bearer s3cret"), Some("studio-x")).is_ok());
    }

    #[test]
    fn globs() {
        assert!(glob("CN=gs-*", "CN=gs-1"));
        assert!(glob("CN=gs-*", "CN=gs-"));
        assert!(!glob("CN=gs-*", "CN=lobby-1"));
        assert!(glob("CN=*.eu-*", "CN=gs1.eu-west"));
        assert!(glob("CN=exact", "CN=exact"));
        assert!(!glob("CN=exact", "CN=exactly"));
    }
}
