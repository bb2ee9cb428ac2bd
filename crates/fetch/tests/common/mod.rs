//! A tiny HTTP/1.1 and HTTPS test server on 127.0.0.1, one request per
//! connection, logging every request it receives.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// One logged request.
#[derive(Debug, Clone)]
pub struct Request {
    /// 0 for the first request this server got, and so on.
    pub index: usize,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send the full `Content-Length` but only this many body bytes, then
    /// drop the connection.
    pub cut_after: Option<usize>,
    /// Send the body in chunks of this many bytes with this pause after
    /// each (a slow server).
    pub throttle: Option<(usize, Duration)>,
}

impl Reply {
    pub fn new(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            cut_after: None,
            throttle: None,
        }
    }

    pub fn ok(body: &[u8]) -> Self {
        Reply {
            body: body.to_vec(),
            ..Reply::new(200)
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn cut_after(mut self, n: usize) -> Self {
        self.cut_after = Some(n);
        self
    }

    pub fn throttle(mut self, chunk: usize, pause: Duration) -> Self {
        self.throttle = Some((chunk.max(1), pause));
        self
    }

    /// Serves `content` honouring `Range: bytes=N-` (206), as a server with
    /// `etag` would, including `If-Range` checks.
    pub fn ranged(req: &Request, content: &[u8], etag: &str) -> Self {
        let range = req
            .header("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok());
        let if_range_ok = req.header("if-range").is_none_or(|v| v == etag);
        match range {
            Some(start) if if_range_ok && start < content.len() => Reply {
                body: content[start..].to_vec(),
                ..Reply::new(206)
            }
            .header(
                "Content-Range",
                &format!("bytes {start}-{}/{}", content.len() - 1, content.len()),
            )
            .header("ETag", etag)
            .header("Accept-Ranges", "bytes"),
            _ => Reply::ok(content)
                .header("ETag", etag)
                .header("Accept-Ranges", "bytes"),
        }
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

pub struct Server {
    pub addr: SocketAddr,
    tls: bool,
    log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn http(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        Server::start(None, Arc::new(handler))
    }

    pub fn https(pki: &Pki, handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        Server::start(Some(pki.server_config.clone()), Arc::new(handler))
    }

    fn start(tls: Option<Arc<ServerConfig>>, handler: Arc<Handler>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let counter = Arc::new(AtomicUsize::new(0));
        let server = Server {
            addr,
            tls: tls.is_some(),
            log: log.clone(),
            stop: stop.clone(),
        };
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (tls, handler, log, counter) =
                    (tls.clone(), handler.clone(), log.clone(), counter.clone());
                thread::spawn(move || {
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    match tls {
                        Some(config) => {
                            let conn = ServerConnection::new(config).unwrap();
                            let tcp = stream.try_clone().unwrap();
                            let mut tls_stream = StreamOwned::new(conn, stream);
                            if serve(&mut tls_stream, &handler, &log, &counter) {
                                tls_stream.conn.send_close_notify();
                                let _ = tls_stream.flush();
                            }
                            let _ = tcp.shutdown(Shutdown::Both);
                        }
                        None => {
                            let mut s = stream.try_clone().unwrap();
                            serve(&mut s, &handler, &log, &counter);
                            let _ = stream.shutdown(Shutdown::Both);
                        }
                    }
                });
            }
        });
        server
    }

    pub fn url(&self, path: &str) -> String {
        self.url_for_host("127.0.0.1", path)
    }

    /// The URL with another name for this machine (e.g. `localhost`).
    pub fn url_for_host(&self, host: &str, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{host}:{}{path}", self.addr.port())
    }

    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so its thread ends.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads one request, logs it and answers. Returns whether the reply was
/// sent whole (so the connection may be closed cleanly).
fn serve<S: Read + Write>(
    stream: &mut S,
    handler: &Arc<Handler>,
    log: &Mutex<Vec<Request>>,
    counter: &AtomicUsize,
) -> bool {
    let mut reader = BufReader::new(&mut *stream);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return false; // TLS handshake refused by the client, or a wake-up.
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return false;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    drop(reader);
    let request = Request {
        index: counter.fetch_add(1, Ordering::SeqCst),
        method,
        path,
        headers,
    };
    log.lock().unwrap().push(request.clone());
    let reply = handler(&request);

    let reason = match reply.status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        _ => "Whatever",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", reply.status);
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if reply.status != 304 {
        head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    if stream.write_all(head.as_bytes()).is_err() {
        return false;
    }
    let body = match reply.cut_after {
        Some(n) => &reply.body[..n.min(reply.body.len())],
        None => &reply.body[..],
    };
    if let Some((chunk, pause)) = reply.throttle {
        for part in body.chunks(chunk) {
            if stream.write_all(part).is_err() || stream.flush().is_err() {
                return false;
            }
            thread::sleep(pause);
        }
    } else if stream.write_all(body).is_err() || stream.flush().is_err() {
        return false;
    }
    reply.cut_after.is_none()
}

/// A test CA and a server certificate for `127.0.0.1` and `localhost`
/// (and any names given to [`Pki::with_names`]), made fresh for each test.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA certificate, PEM: what `SSL_CERT_FILE` would point at.
    pub ca_file: PathBuf,
    pub server_config: Arc<ServerConfig>,
}

impl Pki {
    pub fn new() -> Self {
        Pki::with_names(&[])
    }

    /// A server certificate also valid for `names` (e.g. `example.com`, for
    /// a server reached through `FetchConfig::host_overrides`).
    pub fn with_names(names: &[&str]) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "berth test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().unwrap();
        let mut sans = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        sans.extend(names.iter().map(|n| (*n).to_owned()));
        let mut params = CertificateParams::new(sans).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "berth test server");
        let cert = params.signed_by(&key, &issuer).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        Pki {
            dir,
            ca_file,
            server_config: Arc::new(server_config),
        }
    }
}
