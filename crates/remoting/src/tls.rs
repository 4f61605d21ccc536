//! TLS for every socket Meridian opens or accepts: client ports, name
//! servers, HA replication, Raft members, relays, admin and bench.
//!
//! Settings are RocketMQ's (`tls.server.mode`, `tls.server.*`,
//! `tls.client.*`, `tls.test.mode.enable`, `tls.config.file`), read from
//! broker.conf / namesrv.conf / relay.conf, with the file named by
//! `tls.config.file` overriding the certificate keys as RocketMQ does.
//!
//! A server in `permissive` mode takes TLS and plaintext on one port: a
//! first byte of 0x16 (a TLS handshake record) means TLS. `enforcing`
//! closes plaintext connections; `disabled` closes TLS ones. With
//! `tls.test.mode.enable=true` and no certificate configured, a
//! self-signed certificate is made at start-up.
//!
//! Clients (`tls.enable=true`, or any link of a server in `enforcing`
//! mode) verify the server against `tls.client.trustCertPath` when
//! `tls.client.authServer=true`, and present `tls.client.certPath` /
//! `keyPath` when set (mutual TLS).
//!
//! A TLS key Meridian does not implement or does not know stops the start
//! with the reason (encrypted keys, cipher and protocol choices, a
//! `tls.server.authClient` that would not mean what it says, misspellings):
//! a security setting is never silently off.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::conf::{Conf, ConfError};

/// Keys that would narrow what TLS negotiates. RocketMQ reads none of them
/// (its `TlsSystemConfig` has no such setting), but operators bring them
/// from other brokers' TLS settings; Meridian cannot honour them, so it
/// refuses them rather than let an operator believe a cipher or a protocol
/// version is excluded.
const UNSUPPORTED_KEYS: [(&str, &str); 6] = [
    ("tls.ciphers", CIPHERS),
    ("tls.server.ciphers", CIPHERS),
    ("tls.client.ciphers", CIPHERS),
    ("tls.protocols", PROTOCOLS),
    ("tls.server.protocols", PROTOCOLS),
    ("tls.client.protocols", PROTOCOLS),
];
const CIPHERS: &str = "not implemented: cipher suites cannot be chosen; Meridian offers rustls's defaults (forward-secret AEAD suites only: AES-GCM and ChaCha20-Poly1305), remove the key";
const PROTOCOLS: &str = "not implemented: protocol versions cannot be chosen; Meridian speaks TLS 1.2 and TLS 1.3 only, remove the key";

/// Keys read from the server's own config file only, never from the file
/// `tls.config.file` names (RocketMQ reads its mode and `tls.enable` the
/// same way).
const NOT_IN_FILE: [&str; 5] = [
    "tls.server.mode",
    "tls.enable",
    "tls.config.file",
    "tls.peer.need.client.auth",
    "tls.peer.enable",
];

/// First byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
/// Longest a new connection may take to send its first byte and finish a
/// handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    Disabled,
    Permissive,
    Enforcing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Optional,
    Require,
}

/// The TLS keys of a config file.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub server_mode: TlsMode,
    pub test_mode: bool,
    pub need_client_auth: ClientAuth,
    pub server_cert: Option<PathBuf>,
    pub server_key: Option<PathBuf>,
    pub server_trust: Option<PathBuf>,
    /// Outgoing links use TLS (`tls.enable`).
    pub client_enable: bool,
    pub client_auth_server: bool,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub client_trust: Option<PathBuf>,
    /// Meridian's `tls.peer.need.client.auth`: client certificates on the
    /// links between brokers (HA, Raft), which may differ from the client
    /// port's; `None` is the same as the client port.
    pub peer_need_client_auth: Option<ClientAuth>,
    /// Meridian's `tls.peer.enable`: this broker's links to other brokers
    /// (a slave to its master, Raft members to each other) use TLS; `None`
    /// is the same as its other links.
    pub peer_enable: Option<bool>,
}

impl Default for TlsSettings {
    /// TLS off on every side: what a process gets without TLS keys.
    fn default() -> Self {
        TlsSettings {
            server_mode: TlsMode::Disabled,
            test_mode: false,
            need_client_auth: ClientAuth::None,
            server_cert: None,
            server_key: None,
            server_trust: None,
            client_enable: false,
            client_auth_server: false,
            client_cert: None,
            client_key: None,
            client_trust: None,
            peer_need_client_auth: None,
            peer_enable: None,
        }
    }
}

fn invalid(key: &str, value: &str, reason: &str) -> ConfError {
    ConfError::Invalid {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// Refuse the keys of `conf` starting with `prefix` that nothing read: a
/// TLS key Meridian does not implement, or a misspelt one, would otherwise
/// leave the operator believing it in force. `file` is the
/// `tls.config.file` the keys come from, if they do.
fn refuse_unread(conf: &Conf, prefix: &str, file: Option<&str>) -> Result<(), ConfError> {
    for (key, value) in conf.unread_under(prefix) {
        if value.trim().is_empty() {
            continue;
        }
        let unsupported = UNSUPPORTED_KEYS.iter().find(|(k, _)| *k == key);
        let reason = match (unsupported, file) {
            (Some((_, reason)), None) => reason.to_string(),
            (Some((_, reason)), Some(f)) => format!("{reason} (set in tls.config.file {f})"),
            (None, Some(f)) if NOT_IN_FILE.contains(&key.as_str()) => format!(
                "read from the server's own config file, not from tls.config.file {f} (as in RocketMQ): move it there"
            ),
            (None, Some(f)) => format!(
                "not a TLS key Meridian knows (set in tls.config.file {f}); check its spelling against docs/security.md"
            ),
            (None, None) => {
                "not a TLS key Meridian knows; check its spelling against docs/security.md"
                    .to_string()
            }
        };
        return Err(invalid(&key, &value, &reason));
    }
    Ok(())
}

impl TlsSettings {
    /// Read the TLS keys of `conf` (and of the file `tls.config.file`
    /// names, whose certificate keys win). Without `tls.server.mode` TLS is
    /// off, so a plain deployment pays nothing.
    pub fn from_conf(conf: &mut Conf) -> Result<TlsSettings, ConfError> {
        let file = conf.str("tls.config.file");
        let mut overlay = match &file {
            Some(f) => Some(Conf::load(Path::new(f))?),
            None => {
                let default = Path::new("/etc/rocketmq/tls.properties");
                default.exists().then(|| Conf::load(default)).transpose()?
            }
        };
        // The certificate keys: the file first, then the config.
        let mut key = |k: &str| -> Option<String> {
            let from_file = overlay.as_mut().and_then(|o| o.str(k));
            let own = conf.str(k);
            from_file.or(own).filter(|v| !v.trim().is_empty())
        };
        let test_mode = key("tls.test.mode.enable");
        let need = key("tls.server.need.client.auth");
        let server_cert = key("tls.server.certPath").map(PathBuf::from);
        let server_key = key("tls.server.keyPath").map(PathBuf::from);
        let server_trust = key("tls.server.trustCertPath").map(PathBuf::from);
        let server_key_password = key("tls.server.keyPassword");
        let server_auth_client = key("tls.server.authClient");
        let client_cert = key("tls.client.certPath").map(PathBuf::from);
        let client_key = key("tls.client.keyPath").map(PathBuf::from);
        let client_trust = key("tls.client.trustCertPath").map(PathBuf::from);
        let client_key_password = key("tls.client.keyPassword");
        let client_auth_server = key("tls.client.authServer");
        for (k, v) in [
            ("tls.server.keyPassword", &server_key_password),
            ("tls.client.keyPassword", &client_key_password),
        ] {
            if v.is_some() {
                return Err(invalid(
                    k,
                    "(set)",
                    "encrypted private keys are not supported; give an unencrypted PKCS#8 key (openssl pkcs8 -topk8 -nocrypt) readable only by Meridian",
                ));
            }
        }
        let server_mode = match conf.str("tls.server.mode").as_deref().map(str::trim) {
            None | Some("") | Some("disabled") => TlsMode::Disabled,
            Some("permissive") => TlsMode::Permissive,
            Some("enforcing") => TlsMode::Enforcing,
            Some(other) => {
                return Err(invalid(
                    "tls.server.mode",
                    other,
                    "must be disabled, permissive or enforcing",
                ))
            }
        };
        let bool_of = |k: &str, v: Option<String>, default: bool| -> Result<bool, ConfError> {
            match v.as_deref().map(str::trim) {
                None => Ok(default),
                Some(s) if s.eq_ignore_ascii_case("true") => Ok(true),
                Some(s) if s.eq_ignore_ascii_case("false") => Ok(false),
                Some(s) => Err(invalid(k, s, "must be true or false")),
            }
        };
        let parse_auth = |key: &str, v: Option<String>| -> Result<Option<ClientAuth>, ConfError> {
            match v.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
                None => Ok(None),
                Some(s) if s == "none" => Ok(Some(ClientAuth::None)),
                Some(s) if s == "optional" => Ok(Some(ClientAuth::Optional)),
                Some(s) if s == "require" => Ok(Some(ClientAuth::Require)),
                Some(s) => Err(invalid(key, &s, "must be none, optional or require")),
            }
        };
        let need_client_auth =
            parse_auth("tls.server.need.client.auth", need)?.unwrap_or(ClientAuth::None);
        let peer_need_client_auth = parse_auth(
            "tls.peer.need.client.auth",
            conf.str("tls.peer.need.client.auth"),
        )?;
        // RocketMQ's `tls.server.authClient` decides whether the client
        // certificates asked for are verified against the trust path (true)
        // or taken whatever they are (false); with none asked for it does
        // nothing. Meridian always verifies, so both of the other readings
        // are refused rather than left to mislead.
        let asks_for_certificates = need_client_auth != ClientAuth::None
            || peer_need_client_auth.is_some_and(|p| p != ClientAuth::None);
        let auth_client = match server_auth_client {
            None => None,
            v => Some(bool_of("tls.server.authClient", v, false)?),
        };
        match auth_client {
            Some(false) if asks_for_certificates => {
                return Err(invalid(
                    "tls.server.authClient",
                    "false",
                    "Meridian always verifies the client certificates it asks for against tls.server.trustCertPath; remove the key",
                ))
            }
            Some(true) if !asks_for_certificates => {
                return Err(invalid(
                    "tls.server.authClient",
                    "true",
                    "no client certificate is asked for, so none would be verified: set tls.server.need.client.auth=require (or optional) and tls.server.trustCertPath, or remove the key",
                ))
            }
            _ => {}
        }
        let client_enable = bool_of("tls.enable", conf.str("tls.enable"), false)?;
        let settings = TlsSettings {
            server_mode,
            test_mode: bool_of("tls.test.mode.enable", test_mode, false)?,
            need_client_auth,
            server_cert,
            server_key,
            server_trust,
            client_enable,
            client_auth_server: bool_of("tls.client.authServer", client_auth_server, false)?,
            client_cert,
            client_key,
            client_trust,
            peer_need_client_auth,
            peer_enable: match conf.str("tls.peer.enable") {
                None => None,
                v => Some(bool_of("tls.peer.enable", v, false)?),
            },
        };
        refuse_unread(conf, "tls.", None)?;
        if let Some(o) = &overlay {
            let file = file.as_deref().unwrap_or("/etc/rocketmq/tls.properties");
            refuse_unread(o, "", Some(file))?;
        }
        Ok(settings)
    }

    /// Whether this process's own outgoing links use TLS: `tls.enable`, or
    /// a server that enforces TLS (as RocketMQ's broker does).
    pub fn links_use_tls(&self) -> bool {
        self.client_enable || self.server_mode == TlsMode::Enforcing
    }

    /// The acceptor for this process's listeners.
    pub fn acceptor(&self) -> io::Result<Acceptor> {
        if self.server_mode == TlsMode::Disabled {
            return Ok(Acceptor {
                mode: TlsMode::Disabled,
                tls: None,
            });
        }
        let (certs, key) = match (&self.server_cert, &self.server_key) {
            (Some(c), Some(k)) => (load_certs(c)?, load_key(k)?),
            (None, None) if self.test_mode => self_signed()?,
            (None, None) => {
                return Err(io::Error::other(
                    "tls.server.mode is on but there is no certificate: set tls.server.certPath and tls.server.keyPath (or tls.test.mode.enable=true for a self-signed one)",
                ))
            }
            _ => {
                return Err(io::Error::other(
                    "tls.server.certPath and tls.server.keyPath go together",
                ))
            }
        };
        let builder = rustls::ServerConfig::builder();
        let builder = match self.need_client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            auth => {
                let trust = self.server_trust.as_ref().ok_or_else(|| {
                    io::Error::other(
                        "tls.server.need.client.auth asks for client certificates: set tls.server.trustCertPath to the CA that signs them",
                    )
                })?;
                let roots = Arc::new(load_roots(trust)?);
                let verifier = WebPkiClientVerifier::builder(roots);
                let verifier = if auth == ClientAuth::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(verifier.build().map_err(io::Error::other)?)
            }
        };
        let config = builder.with_single_cert(certs, key).map_err(|e| {
            io::Error::other(format!(
                "the server certificate and key do not go together: {e}"
            ))
        })?;
        Ok(Acceptor {
            mode: self.server_mode,
            tls: Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        })
    }

    /// The acceptor for links between brokers (HA, Raft): the client
    /// port's, with `tls.peer.need.client.auth` when set. Requiring
    /// certificates there also refuses plaintext, so a stranger can neither
    /// join a Raft group nor pose as a slave.
    pub fn peer_acceptor(&self) -> io::Result<Acceptor> {
        match self.peer_need_client_auth {
            None => self.acceptor(),
            Some(need) => TlsSettings {
                need_client_auth: need,
                server_mode: if need == ClientAuth::Require {
                    TlsMode::Enforcing
                } else {
                    self.server_mode
                },
                ..self.clone()
            }
            .acceptor(),
        }
    }

    /// The connector for links to other brokers (`tls.peer.enable`).
    pub fn peer_connector(&self) -> io::Result<Connector> {
        match self.peer_enable {
            None => self.connector(),
            Some(false) => Ok(Connector { tls: None }),
            Some(true) => TlsSettings {
                client_enable: true,
                ..self.clone()
            }
            .connector(),
        }
    }

    /// The connector for this process's outgoing links.
    pub fn connector(&self) -> io::Result<Connector> {
        if !self.links_use_tls() {
            return Ok(Connector { tls: None });
        }
        client_connector(
            self.client_auth_server && !self.test_mode,
            self.client_trust.as_deref(),
            self.client_cert.as_deref(),
            self.client_key.as_deref(),
        )
    }
}

/// A TLS client: verifying the server against `trust` when `verify`, and
/// presenting `cert` / `key` when given.
pub fn client_connector(
    verify: bool,
    trust: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> io::Result<Connector> {
    let builder = if verify {
        let trust = trust.ok_or_else(|| {
            io::Error::other("tls.client.authServer=true needs tls.client.trustCertPath")
        })?;
        rustls::ClientConfig::builder().with_root_certificates(load_roots(trust)?)
    } else {
        rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer::new()))
    };
    let config = match (cert, key) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(load_certs(c)?, load_key(k)?)
            .map_err(|e| {
                io::Error::other(format!(
                    "the client certificate and key do not go together: {e}"
                ))
            })?,
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(io::Error::other(
                "tls.client.certPath and tls.client.keyPath go together",
            ))
        }
    };
    Ok(Connector {
        tls: Some(tokio_rustls::TlsConnector::from(Arc::new(config))),
    })
}

fn load_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            io::Error::other(format!(
                "cannot read certificates from {}: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(io::Error::other(format!(
            "no certificate in {}",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        io::Error::other(format!(
            "cannot read a private key from {} (an unencrypted PEM key is needed): {e}",
            path.display()
        ))
    })
}

fn load_roots(path: &Path) -> io::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path)? {
        roots
            .add(c)
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
    }
    Ok(roots)
}

/// A certificate for "localhost" and 127.0.0.1, made now.
fn self_signed() -> io::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(io::Error::other)?;
    tracing::warn!("tls.test.mode.enable: serving TLS with a self-signed certificate made at start-up; clients cannot verify it");
    let key =
        PrivateKeyDer::try_from(made.signing_key.serialize_der()).map_err(io::Error::other)?;
    Ok((vec![made.cert.der().clone()], key))
}

/// Accepts any server certificate (RocketMQ's `tls.client.authServer=false`):
/// the link is encrypted but the server is not authenticated.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl AnyServer {
    fn new() -> AnyServer {
        AnyServer(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
    }
}

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Turns accepted TCP connections into plaintext or TLS streams, by mode.
#[derive(Clone)]
pub struct Acceptor {
    mode: TlsMode,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Acceptor({:?})", self.mode)
    }
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connector(tls: {})", self.tls.is_some())
    }
}

impl Default for Acceptor {
    fn default() -> Self {
        Acceptor {
            mode: TlsMode::Disabled,
            tls: None,
        }
    }
}

impl Acceptor {
    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    /// The stream to serve, or an error saying why the connection is
    /// closed (TLS where it is disabled, plaintext where it is enforced, a
    /// failed handshake).
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<NetStream> {
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            if self.mode == TlsMode::Disabled {
                return Ok(NetStream::Plain(tcp));
            }
            return Err(io::Error::other("TLS is not configured"));
        };
        let mut first = [0u8; 1];
        let n = tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "nothing sent"))??;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before sending",
            ));
        }
        if first[0] != TLS_HANDSHAKE {
            return match self.mode {
                TlsMode::Enforcing => Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "plaintext connection refused: tls.server.mode=enforcing",
                )),
                _ => Ok(NetStream::Plain(tcp)),
            };
        }
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        Ok(NetStream::Tls(Box::new(tokio_rustls::TlsStream::Server(
            stream,
        ))))
    }
}

/// Opens outgoing connections, plaintext or TLS.
#[derive(Clone, Default)]
pub struct Connector {
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Connector {
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Connect to `addr` ("host:port") within `timeout`.
    pub async fn connect(&self, addr: &str, timeout: Duration) -> io::Result<NetStream> {
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(NetStream::Plain(tcp));
        };
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::other(format!("{host} is not a server name: {e}")))?;
        let stream = tokio::time::timeout(timeout.max(HANDSHAKE_TIMEOUT), tls.connect(name, tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        Ok(NetStream::Tls(Box::new(tokio_rustls::TlsStream::Client(
            stream,
        ))))
    }
}

/// A connection: plaintext or TLS.
pub enum NetStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl NetStream {
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            NetStream::Plain(s) => s.peer_addr(),
            NetStream::Tls(s) => s.get_ref().0.peer_addr(),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, NetStream::Tls(_))
    }
}

impl AsyncRead for NetStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NetStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            NetStream::Plain(s) => s.is_write_vectored(),
            NetStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_flush(cx),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A directory of its own under the system's temp dir, removed when
    /// dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("meridian-tls-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("scratch dir");
            Scratch(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).expect("write");
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The error `from_conf` gives for `text`; panics if it accepts it.
    fn refusal(text: &str) -> String {
        match TlsSettings::from_conf(&mut Conf::parse(text)) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    fn accepted(text: &str) -> TlsSettings {
        TlsSettings::from_conf(&mut Conf::parse(text))
            .unwrap_or_else(|e| panic!("refused: {e}\n{text}"))
    }

    #[test]
    fn cipher_and_protocol_keys_stop_the_start() {
        for (key, _) in UNSUPPORTED_KEYS {
            let err = refusal(&format!("tls.server.mode=permissive\n{key}=TLSv1.2\n"));
            assert!(
                err.contains(key) && err.contains("not implemented"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_misspelt_tls_key_stops_the_start() {
        let err = refusal("tls.server.mode=enforcing\ntls.server.needClientAuth=require\n");
        assert!(
            err.contains("tls.server.needClientAuth") && err.contains("not a TLS key"),
            "{err}"
        );
        // Other keys are the server's business (named in its warning).
        accepted("tls.server.mode=disabled\nbrokerNmae=a\n");
    }

    #[test]
    fn keys_of_the_tls_config_file_are_checked_too() {
        let dir = Scratch::new("config-file");
        let file = dir.write("tls.properties", "tls.ciphers=TLS_AES_128_GCM_SHA256\n");
        let err = refusal(&format!("tls.config.file={}\n", file.display()));
        assert!(
            err.contains("tls.ciphers")
                && err.contains("not implemented")
                && err.contains(&file.display().to_string()),
            "{err}"
        );
        let file = dir.write("mode.properties", "tls.server.mode=enforcing\n");
        let err = refusal(&format!("tls.config.file={}\n", file.display()));
        assert!(
            err.contains("tls.server.mode") && err.contains("not from tls.config.file"),
            "{err}"
        );
    }

    #[test]
    fn encrypted_private_keys_stop_the_start() {
        for key in ["tls.server.keyPassword", "tls.client.keyPassword"] {
            let err = refusal(&format!("{key}=secret\n"));
            assert!(err.contains(key) && err.contains("unencrypted"), "{err}");
        }
    }

    #[test]
    fn auth_client_true_without_client_certificates_stops_the_start() {
        for text in [
            "tls.server.mode=enforcing\ntls.server.authClient=true\n",
            "tls.server.mode=enforcing\ntls.server.authClient=true\ntls.server.need.client.auth=none\n",
        ] {
            let err = refusal(text);
            assert!(
                err.contains("tls.server.authClient")
                    && err.contains("tls.server.need.client.auth=require"),
                "{err}"
            );
        }
        // With certificates asked for, it is what Meridian does anyway.
        let s = accepted(
            "tls.server.authClient=true\ntls.server.need.client.auth=require\ntls.server.trustCertPath=/ca.pem\n",
        );
        assert_eq!(s.need_client_auth, ClientAuth::Require);
        accepted("tls.server.authClient=true\ntls.peer.need.client.auth=require\n");
        let err = refusal("tls.server.authClient=yes\n");
        assert!(err.contains("must be true or false"), "{err}");
    }

    #[test]
    fn auth_client_false_with_client_certificates_stops_the_start() {
        for need in [
            "tls.server.need.client.auth=optional",
            "tls.server.need.client.auth=require",
            "tls.peer.need.client.auth=require",
        ] {
            let err = refusal(&format!("tls.server.authClient=false\n{need}\n"));
            assert!(
                err.contains("tls.server.authClient") && err.contains("always verifies"),
                "{err}"
            );
        }
        // Nothing asked for, nothing to verify: RocketMQ's defaults agree.
        accepted("tls.server.authClient=false\ntls.server.need.client.auth=none\n");
    }

    /// A CA and a certificate it signs for 127.0.0.1 (server) or a client.
    struct Pki {
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    }

    fn pki(dir: &Scratch, name: &str, server: bool) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let (names, usage) = if server {
            (
                vec!["127.0.0.1".to_string()],
                ExtendedKeyUsagePurpose::ServerAuth,
            )
        } else {
            (
                vec!["client".to_string()],
                ExtendedKeyUsagePurpose::ClientAuth,
            )
        };
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &ca).expect("certificate");
        Pki {
            ca: dir.write(&format!("{name}-ca.pem"), &ca.pem()),
            cert: dir.write(&format!("{name}.pem"), &cert.pem()),
            key: dir.write(&format!("{name}.key"), &key.serialize_pem()),
        }
    }

    /// Send a line through `connector` to `addr` and read what comes back.
    async fn echo(connector: &Connector, addr: &str) -> io::Result<Vec<u8>> {
        let mut stream = connector.connect(addr, Duration::from_secs(5)).await?;
        stream.write_all(b"ping\n").await?;
        let mut back = vec![0u8; 5];
        stream.read_exact(&mut back).await?;
        Ok(back)
    }

    #[tokio::test]
    async fn optional_client_auth_serves_clients_with_and_without_a_certificate() {
        let dir = Scratch::new("optional");
        let server = pki(&dir, "server", true);
        let client = pki(&dir, "client", false);
        let stranger = pki(&dir, "stranger", false);
        // The server trusts the CA that signed the client's certificate.
        let settings = accepted(&format!(
            "tls.server.mode=enforcing\ntls.server.need.client.auth=optional\n\
             tls.server.certPath={}\ntls.server.keyPath={}\ntls.server.trustCertPath={}\n",
            server.cert.display(),
            server.key.display(),
            client.ca.display()
        ));
        let acceptor = settings.acceptor().expect("acceptor");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut line = [0u8; 5];
                    if stream.read_exact(&mut line).await.is_ok() {
                        let _ = stream.write_all(&line).await;
                        let _ = stream.flush().await;
                    }
                });
            }
        });

        let connect = |cert: Option<&Pki>| {
            client_connector(
                true,
                Some(&server.ca),
                cert.map(|c| c.cert.as_path()),
                cert.map(|c| c.key.as_path()),
            )
            .expect("connector")
        };
        let anonymous = echo(&connect(None), &addr).await;
        assert_eq!(anonymous.expect("served without a certificate"), b"ping\n");
        let signed = echo(&connect(Some(&client)), &addr).await;
        assert_eq!(signed.expect("served with a certificate"), b"ping\n");
        // A certificate is still checked when one is presented.
        let refused = echo(&connect(Some(&stranger)), &addr).await;
        assert!(
            refused.is_err(),
            "a certificate from another CA is refused: {refused:?}"
        );
    }
}
