//! TLS material for the gRPC port: a small CA of the agent's own, and the agent's
//! certificate signed by it (rcgen, ring). `deploy-agent init` makes them; the agent serves
//! with them; `deployctl` trusts the CA through the env's `ca_file`.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::error::Error;

/// Where `init` writes the files, in the data directory.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub dir: PathBuf,
}

impl TlsFiles {
    pub(crate) fn new(data_dir: &Path) -> TlsFiles {
        TlsFiles {
            dir: data_dir.join("tls"),
        }
    }
    pub(crate) fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub(crate) fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub(crate) fn cert(&self) -> PathBuf {
        self.dir.join("agent.pem")
    }
    pub(crate) fn key(&self) -> PathBuf {
        self.dir.join("agent.key")
    }
    pub(crate) fn exist(&self) -> bool {
        self.cert().is_file() && self.key().is_file()
    }
}

fn tls_err(what: &str, e: rcgen::Error) -> Error {
    Error::Internal(format!("{what}: {e}"))
}

/// Makes a CA (unless one exists) and a certificate for `names` (DNS names or IP
/// addresses) signed by it. Keys are written with mode 0600.
pub(crate) fn create(files: &TlsFiles, names: &[String]) -> Result<(), Error> {
    std::fs::create_dir_all(&files.dir).map_err(|e| Error::io("creating", &files.dir, e))?;
    crate::auth::set_mode(&files.dir, 0o700);

    let (ca_key, ca_params) = if files.ca_cert().is_file() && files.ca_key().is_file() {
        let key_pem = std::fs::read_to_string(files.ca_key())
            .map_err(|e| Error::io("reading", files.ca_key(), e))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| tls_err("reading the CA key", e))?;
        (key, ca_params())
    } else {
        let key = KeyPair::generate().map_err(|e| tls_err("making the CA key", e))?;
        let params = ca_params();
        let cert = params
            .self_signed(&key)
            .map_err(|e| tls_err("making the CA certificate", e))?;
        write(&files.ca_cert(), cert.pem().as_bytes(), 0o644)?;
        write(&files.ca_key(), key.serialize_pem().as_bytes(), 0o600)?;
        (key, params)
    };
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(names.to_vec())
        .map_err(|e| tls_err("the certificate's names", e))?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(|e| tls_err("making the agent key", e))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| tls_err("signing the agent certificate", e))?;
    write(&files.cert(), cert.pem().as_bytes(), 0o644)?;
    write(&files.key(), key.serialize_pem().as_bytes(), 0o600)?;
    Ok(())
}

/// The CA's parameters; the same each time, so an existing CA key can sign again.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "deploy-agent CA");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    crate::fsmode::write_atomic(path, bytes)?;
    crate::auth::set_mode(path, mode);
    Ok(())
}

/// The identity tonic serves with.
pub(crate) fn identity(cert: &Path, key: &Path) -> Result<tonic::transport::Identity, Error> {
    let c = std::fs::read(cert).map_err(|e| Error::io("reading the TLS certificate", cert, e))?;
    let k = std::fs::read(key).map_err(|e| Error::io("reading the TLS key", key, e))?;
    Ok(tonic::transport::Identity::from_pem(c, k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_ca_and_certificate() {
        let dir = std::env::temp_dir().join(format!("tls-test-{}", std::process::id()));
        let files = TlsFiles::new(&dir);
        create(&files, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert!(files.exist() && files.ca_cert().is_file());
        let ca = std::fs::read_to_string(files.ca_cert()).unwrap();
        assert!(ca.contains("BEGIN CERTIFICATE"));
        // A second run keeps the CA and signs a new certificate with it.
        create(&files, &["agent.example".into()]).unwrap();
        assert_eq!(std::fs::read_to_string(files.ca_cert()).unwrap(), ca);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(files.key()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
