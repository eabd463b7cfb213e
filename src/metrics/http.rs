//! HTTP endpoint for the scrape (tiny_http, one thread): GET /metrics gets
//! the text format, anything else 404. Holds no engine state of its own.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus::Registry;

pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    pub local_addr: SocketAddr,
}

/// Bind `listen` and serve /metrics from `registry` on a background thread.
pub fn serve(listen: SocketAddr, registry: Registry) -> io::Result<MetricsServer> {
    let server = Arc::new(
        tiny_http::Server::http(listen)
            .map_err(|e| io::Error::other(format!("metrics listener {listen}: {e}")))?,
    );
    let local_addr = server.server_addr().to_ip().unwrap_or(listen);
    let worker = server.clone();
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in worker.incoming_requests() {
                let response = if request.url() == "/metrics" {
                    let header =
                        tiny_http::Header::from_bytes("Content-Type", prometheus::TEXT_FORMAT)
                            .expect("static header is valid");
                    tiny_http::Response::from_string(super::render(&registry)).with_header(header)
                } else {
                    tiny_http::Response::from_string("not found; try /metrics\n")
                        .with_status_code(404)
                };
                let _ = request.respond(response);
            }
        })?;
    Ok(MetricsServer {
        server,
        thread: Some(thread),
        local_addr,
    })
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_and_404() {
        let counters = Arc::new(crate::engine::Counters::default());
        let server = serve(
            "127.0.0.1:0".parse().unwrap(),
            crate::metrics::registry(counters),
        )
        .unwrap();
        let ok = get(server.local_addr, "/metrics");
        assert!(
            ok.starts_with("HTTP/1.0 200") || ok.starts_with("HTTP/1.1 200"),
            "{ok}"
        );
        assert!(ok.contains("synguard_build_info{version="));
        let missing = get(server.local_addr, "/nope");
        assert!(missing.contains(" 404 "), "{missing}");
    }
}
