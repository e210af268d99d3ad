//! A throwaway CA for tests and load generators: a server certificate for `localhost`
//! and client certificates per simulated host.

use std::path::Path;

/// A client's certificate and key (DER, PKCS#8).
#[derive(Clone, Debug)]
pub struct ClientCert {
    /// The certificate.
    pub cert: Vec<u8>,
    /// Its key.
    pub key: Vec<u8>,
}

/// The head of a gateway config that listens on `127.0.0.1:port` with mTLS, using the
/// files [`Pki::new`] wrote into `dir`, and takes tenants from SPIFFE identities.
pub fn gateway_yaml_head(port: u16, dir: &Path) -> String {
    format!(
        "listen: 127.0.0.1:{port}\n\
         tls: {{ cert: {d}/server.crt, key: {d}/server.key, client_ca: {d}/ca.crt }}\n\
         identities: {{ spiffe_trust_domain: obs.internal }}\n",
        d = dir.display()
    )
}

/// A CA that signs what a test needs.
#[allow(missing_debug_implementations)]
pub struct Pki {
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate (DER).
    pub ca_der: Vec<u8>,
}

impl Pki {
    /// A new CA; writes `ca.crt`, `server.crt` and `server.key` (PEM) into `dir`.
    pub fn new(dir: &Path) -> std::io::Result<Pki> {
        let err = |e: rcgen::Error| std::io::Error::other(e.to_string());
        let ca_key = rcgen::KeyPair::generate().map_err(err)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "edgepipe throwaway CA");
        let ca_cert = params.self_signed(&ca_key).map_err(err)?;
        std::fs::write(dir.join("ca.crt"), ca_cert.pem())?;
        let ca = rcgen::Issuer::new(params, ca_key);
        let key = rcgen::KeyPair::generate().map_err(err)?;
        let server = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .map_err(err)?
            .signed_by(&key, &ca)
            .map_err(err)?;
        std::fs::write(dir.join("server.crt"), server.pem())?;
        std::fs::write(dir.join("server.key"), key.serialize_pem())?;
        Ok(Pki {
            ca,
            ca_der: ca_cert.der().to_vec(),
        })
    }

    /// A client certificate with CN `cn` and a SPIFFE URI SAN naming `tenant`.
    fn issue(
        &self,
        cn: &str,
        tenant: &str,
    ) -> std::io::Result<(rcgen::Certificate, rcgen::KeyPair)> {
        let err = |e: rcgen::Error| std::io::Error::other(e.to_string());
        let key = rcgen::KeyPair::generate().map_err(err)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let uri = format!("spiffe://obs.internal/tenant/{tenant}/{cn}");
        params
            .subject_alt_names
            .push(rcgen::SanType::URI(uri.try_into().map_err(err)?));
        let cert = params.signed_by(&key, &self.ca).map_err(err)?;
        Ok((cert, key))
    }

    /// [`Pki::issue`], as DER.
    pub fn client(&self, cn: &str, tenant: &str) -> std::io::Result<ClientCert> {
        let (cert, key) = self.issue(cn, tenant)?;
        Ok(ClientCert {
            cert: cert.der().to_vec(),
            key: key.serialize_der(),
        })
    }

    /// [`Pki::issue`], written as `agent.crt` and `agent.key` (PEM) into `dir`.
    pub fn write_client(&self, dir: &Path, cn: &str, tenant: &str) -> std::io::Result<()> {
        let (cert, key) = self.issue(cn, tenant)?;
        std::fs::write(dir.join("agent.crt"), cert.pem())?;
        std::fs::write(dir.join("agent.key"), key.serialize_pem())?;
        Ok(())
    }
}
