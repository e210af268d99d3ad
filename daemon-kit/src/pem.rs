//! PEM files → what rustls takes, with the checks both daemons need: a certificate
//! file with no certificate, and a CA file that trusts nothing, are errors (an empty
//! trust store would be an open door or a certain failure, never what was meant).
//! Errors say why; the caller says which file and what it is for.

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;

/// Every certificate in `path`, in order; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(certs)
}

/// The private key in `path`.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| e.to_string())
}

/// A trust store of every CA certificate in `path`; at least one.
pub fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())? {
        roots
            .add(ca.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("no CA certificate in the file".into());
    }
    Ok(roots)
}

/// The `notAfter` of a DER certificate, in Unix seconds.
pub fn not_after(der: &[u8]) -> Result<i64, String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert.validity().not_after.timestamp())
        .map_err(|e| format!("not an X.509 certificate: {e}"))
}

/// The `notAfter` of the first certificate in the PEM file `path`, in Unix seconds.
pub fn first_not_after(path: &Path) -> Result<i64, String> {
    let certs = certificates(path)?;
    not_after(&certs[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_an_error_not_an_empty_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a PEM file\n").expect("write");
        assert_eq!(
            certificates(&empty).err().as_deref(),
            Some("no certificate in the file")
        );
        assert_eq!(
            roots(&empty).err().as_deref(),
            Some("no CA certificate in the file")
        );
        assert!(private_key(&empty).is_err());
        assert!(certificates(&dir.path().join("missing.pem")).is_err());
        assert!(first_not_after(&empty).is_err());
    }

    #[test]
    fn the_expiry_is_the_certificates_not_after() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["gs-1".into()]).expect("params");
        params.not_after = rcgen::date_time_ymd(2031, 5, 17);
        let cert = params.self_signed(&key).expect("cert");
        // 2031-05-17T00:00:00Z
        assert_eq!(not_after(cert.der()), Ok(1_936_742_400));
        assert!(not_after(b"not a certificate").is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        let pem = dir.path().join("leaf.pem");
        std::fs::write(&pem, cert.pem()).expect("write");
        assert_eq!(first_not_after(&pem), Ok(1_936_742_400));
    }
}
