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
        if server_auth_client
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("false"))
            && need.is_some()
        {
            return Err(invalid(
                "tls.server.authClient",
                "false",
                "Meridian always verifies client certificates it asks for against tls.server.trustCertPath",
            ));
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
        if let Some(o) = &overlay {
            let unknown = o.unknown_keys();
            if !unknown.is_empty() {
                return Err(invalid(
                    "tls.config.file",
                    file.as_deref().unwrap_or("/etc/rocketmq/tls.properties"),
                    &format!("unknown keys: {}", unknown.join(", ")),
                ));
            }
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
