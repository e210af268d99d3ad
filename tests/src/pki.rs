//! A throwaway CA for tests and load generators: a server certificate for `localhost`
//! and client certificates per simulated host.

use std::path::{Path, PathBuf};

/// A client's certificate and key (DER, PKCS#8).
#[derive(Clone, Debug)]
pub struct ClientCert {
    /// The certificate.
    pub cert: Vec<u8>,
    /// Its key.
    pub key: Vec<u8>,
}

/// The tokenization key the tests' agents and gateways share, so that a value gets the
/// same token whichever daemon tokenized it.
pub const TEST_TOKENIZE_KEY: &str = "e2e-key-0123456789abcdef\n";

/// Writes [`TEST_TOKENIZE_KEY`] to `dir/tokenize.key`, unless a key is there already.
pub fn write_test_tokenize_key(dir: &Path) -> std::io::Result<()> {
    let path = dir.join("tokenize.key");
    if path.exists() {
        return Ok(());
    }
    std::fs::write(path, TEST_TOKENIZE_KEY)
}

/// The head of a gateway config that listens on `127.0.0.1:port` with mTLS, using the
/// files [`Pki::new`] wrote into `dir`, tokenizes with [`TEST_TOKENIZE_KEY`] and the
/// agents' detectors ([`crate::rig::DETECTORS`]), takes tenants from SPIFFE identities,
/// and allows the simulated fleet's labels ([`crate::fleet::fleet_policy_yaml`], written
/// here into `dir/fleet-labels.yaml`). The sinks follow: [`crate::rig::GatewayRig`]
/// writes them for the tests.
pub fn gateway_yaml_head(port: u16, dir: &Path) -> String {
    if let Err(e) = write_test_tokenize_key(dir) {
        panic!("writing the tokenization key into {}: {e}", dir.display());
    }
    let policy = dir.join("fleet-labels.yaml");
    if let Err(e) = std::fs::write(&policy, crate::fleet::fleet_policy_yaml()) {
        panic!("writing {}: {e}", policy.display());
    }
    format!(
        "listen: 127.0.0.1:{port}\n\
         tokenize: {{ key_file: {d}/tokenize.key, detectors: {detectors} }}\n\
         tls: {{ cert: {d}/server.crt, key: {d}/server.key, client_ca: {d}/ca.crt }}\n\
         identities: {{ spiffe_trust_domain: obs.internal }}\n\
         policy: {p}\n",
        d = dir.display(),
        p = policy.display(),
        detectors = crate::rig::DETECTORS,
    )
}

/// A CA that signs what a test needs: the one test CA of the workspace (the agent's,
/// the gateway's and the end-to-end tests use it).
#[allow(missing_debug_implementations)]
pub struct Pki {
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// Where its files are.
    pub dir: PathBuf,
    /// The CA certificate (DER).
    pub ca_der: Vec<u8>,
    /// The server certificate for `localhost` (DER).
    pub server_der: Vec<u8>,
    /// Its key (DER, PKCS#8).
    pub server_key_der: Vec<u8>,
}

fn rcgen_err(e: rcgen::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl Pki {
    /// A new CA; writes `ca.crt`, `server.crt` and `server.key` (PEM) into `dir`.
    pub fn new(dir: &Path) -> std::io::Result<Pki> {
        Self::with_prefix(dir, "")
    }

    /// A new CA whose files are named `{prefix}-ca.crt`, `{prefix}-server.crt` and
    /// `{prefix}-server.key` (plain names for an empty prefix).
    pub fn with_prefix(dir: &Path, prefix: &str) -> std::io::Result<Pki> {
        let name = |file: &str| {
            if prefix.is_empty() {
                dir.join(file)
            } else {
                dir.join(format!("{prefix}-{file}"))
            }
        };
        let ca_key = rcgen::KeyPair::generate().map_err(rcgen_err)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(rcgen_err)?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "edgepipe throwaway CA");
        let ca_cert = params.self_signed(&ca_key).map_err(rcgen_err)?;
        std::fs::write(name("ca.crt"), ca_cert.pem())?;
        let ca = rcgen::Issuer::new(params, ca_key);
        let key = rcgen::KeyPair::generate().map_err(rcgen_err)?;
        let server = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .map_err(rcgen_err)?
            .signed_by(&key, &ca)
            .map_err(rcgen_err)?;
        std::fs::write(name("server.crt"), server.pem())?;
        std::fs::write(name("server.key"), key.serialize_pem())?;
        Ok(Pki {
            ca,
            dir: dir.to_path_buf(),
            ca_der: ca_cert.der().to_vec(),
            server_der: server.der().to_vec(),
            server_key_der: key.serialize_der(),
        })
    }

    /// A client certificate with CN `cn` and, if given, the URI SAN `uri`.
    pub fn issue(
        &self,
        cn: &str,
        uri: Option<&str>,
    ) -> std::io::Result<(rcgen::Certificate, rcgen::KeyPair)> {
        let key = rcgen::KeyPair::generate().map_err(rcgen_err)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(rcgen_err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        if let Some(uri) = uri {
            params.subject_alt_names.push(rcgen::SanType::URI(
                uri.to_string().try_into().map_err(rcgen_err)?,
            ));
        }
        let cert = params.signed_by(&key, &self.ca).map_err(rcgen_err)?;
        Ok((cert, key))
    }

    /// The SPIFFE URI that names `tenant` for host `cn`.
    pub fn spiffe(cn: &str, tenant: &str) -> String {
        format!("spiffe://obs.internal/tenant/{tenant}/{cn}")
    }

    /// A client certificate with CN `cn` and a SPIFFE URI SAN naming `tenant`, as DER.
    pub fn client(&self, cn: &str, tenant: &str) -> std::io::Result<ClientCert> {
        self.client_with_uri(cn, Some(&Self::spiffe(cn, tenant)))
    }

    /// A client certificate with CN `cn` and, if given, the URI SAN `uri`, as DER.
    pub fn client_with_uri(&self, cn: &str, uri: Option<&str>) -> std::io::Result<ClientCert> {
        let (cert, key) = self.issue(cn, uri)?;
        Ok(ClientCert {
            cert: cert.der().to_vec(),
            key: key.serialize_der(),
        })
    }

    /// [`Pki::client`], written as `agent.crt` and `agent.key` (PEM) into `dir`.
    pub fn write_client(&self, dir: &Path, cn: &str, tenant: &str) -> std::io::Result<()> {
        let (cert, key) = self.issue(cn, Some(&Self::spiffe(cn, tenant)))?;
        std::fs::write(dir.join("agent.crt"), cert.pem())?;
        std::fs::write(dir.join("agent.key"), key.serialize_pem())?;
        Ok(())
    }
}
