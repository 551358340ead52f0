//! A throw-away TLS certificate for test servers ([`TlsCert`]).

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A self-signed certificate for `127.0.0.1` (made with the `openssl` command-line tool, valid for two
/// days) in a temporary directory that is removed on drop. It serves test servers a TLS port beside
/// their plain one: [`RedisServer::spawn_with`](super::RedisServer::spawn_with) with
/// [`server_args`](Self::server_args), [`RedisCluster::spawn_tls`](super::RedisCluster::spawn_tls)
/// and [`RedisSentinels::spawn_tls`](super::RedisSentinels::spawn_tls). Clients reach such a port as
/// `rediss://127.0.0.1:port/#insecure`: the certificate is in no trust store.
#[derive(Debug)]
pub struct TlsCert {
    cert: PathBuf,
    key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsCert {
    /// Make a certificate and its key.
    ///
    /// # Panics
    /// If the `openssl` tool is missing or fails; the message says so.
    pub fn generate() -> TlsCert {
        match Self::try_generate() {
            Ok(c) => c,
            Err(e) => panic!("TlsCert::generate failed: {e}"),
        }
    }

    /// Like [`TlsCert::generate`], returning failures as an error.
    pub fn try_generate() -> io::Result<TlsCert> {
        let dir = tempfile::Builder::new().prefix("lockattr-tls-").tempdir()?;
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot run the openssl command-line tool (install it, e.g. apt-get install openssl): {e}"),
                )
            })?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "openssl failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(TlsCert {
            cert,
            key,
            _dir: dir,
        })
    }

    /// The certificate file (PEM).
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// The private key file (PEM).
    pub fn key(&self) -> &Path {
        &self.key
    }

    /// `redis-server` arguments that open a TLS port `tls_port` with this certificate, accepting clients
    /// without certificates of their own.
    pub fn server_args(&self, tls_port: u16) -> Vec<String> {
        let (cert, key) = (
            self.cert.display().to_string(),
            self.key.display().to_string(),
        );
        vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            cert.clone(),
            "--tls-key-file".into(),
            key,
            "--tls-ca-cert-file".into(),
            cert,
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    }

    /// The same settings as lines of a configuration file (for `redis-server --sentinel`), with
    /// `tls-replication yes`: a Sentinel then reaches servers and other Sentinels over TLS.
    pub(crate) fn sentinel_conf(&self, tls_port: u16) -> String {
        format!(
            "tls-port {tls_port}\ntls-cert-file {cert}\ntls-key-file {key}\ntls-ca-cert-file {cert}\n\
             tls-auth-clients no\ntls-replication yes\n",
            cert = self.cert.display(),
            key = self.key.display()
        )
    }
}
