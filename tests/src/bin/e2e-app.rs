//! `e2e-app`: the app behind the sidecar in the one-node e2e tests (image
//! `localhost/hookguard/test-app:dev`). It answers 200 to every POST and records each
//! delivery that reached it (the sidecar's delivery ID header and the body's sha256), so a
//! test can count, per pod, how often each delivery arrived: `GET /deliveries`. `GET /healthz`
//! is its probe. It writes nothing to disk (read-only root filesystem) and needs no root.
//!
//! Memory is bounded: at most `--max-records` records are kept (later arrivals are only
//! counted, in `dropped`), and a body over 1 MiB is refused with 413 and not recorded.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use hookguard_api::names::HEADER_DELIVERY_ID;

/// Largest body recorded; the sidecar's own limit is lower by default.
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, Parser)]
#[command(about = "Test app for the Hookguard e2e: records the deliveries it receives")]
struct Args {
    /// Port to listen on, on all addresses (the pod's own network namespace).
    #[arg(long, env = "E2E_APP_PORT", default_value_t = 8080)]
    port: u16,
    /// How many deliveries to remember; later ones are only counted.
    #[arg(long, env = "E2E_APP_MAX_RECORDS", default_value_t = 10_000)]
    max_records: usize,
}

/// One delivery that reached the app.
#[derive(Debug, Clone, Serialize)]
struct Record {
    /// The `x-hookguard-delivery-id` header; empty when missing.
    id: String,
    /// Lowercase hex sha256 of the body.
    body_sha256: String,
}

/// The answer of `GET /deliveries`.
#[derive(Debug, Default, Serialize)]
struct Log {
    /// The pod's name (`HOSTNAME`), so answers from several pods can be told apart.
    pod: String,
    /// Every POST that got 200, recorded or not.
    received: u64,
    /// Arrivals past `--max-records`, counted but not recorded.
    dropped: u64,
    deliveries: Vec<Record>,
}

#[derive(Debug)]
struct State {
    max_records: usize,
    log: Mutex<Log>,
}

impl State {
    /// Counts one delivery and records it while there is room.
    fn record(&self, id: String, body: &[u8]) {
        let body_sha256 = Sha256::digest(body)
            .iter()
            .fold(String::new(), |mut hex, b| {
                let _ = write!(hex, "{b:02x}");
                hex
            });
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.received += 1;
        if log.deliveries.len() < self.max_records {
            log.deliveries.push(Record { id, body_sha256 });
        } else {
            log.dropped += 1;
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let state = Arc::new(State {
        max_records: args.max_records,
        log: Mutex::new(Log {
            pod: std::env::var("HOSTNAME").unwrap_or_default(),
            ..Log::default()
        }),
    });
    let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], args.port))).await?;
    eprintln!("e2e-app: listening on {}", listener.local_addr()?);
    // PID 1 in a container ignores SIGTERM unless it handles it.
    let mut term = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = Arc::clone(&state);
                let service = service_fn(move |request| serve(Arc::clone(&state), request));
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    eprintln!("e2e-app: stopping");
    Ok(())
}

async fn serve(
    state: Arc<State>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        Ok(response)
    };
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => reply(StatusCode::OK, b"ok\n".to_vec()),
        (&Method::GET, "/deliveries") => {
            let json =
                serde_json::to_vec(&*state.log.lock().unwrap_or_else(PoisonError::into_inner));
            match json {
                Ok(json) => reply(StatusCode::OK, json),
                Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, Vec::new()),
            }
        }
        (&Method::POST, _) => {
            let id = request
                .headers()
                .get(HEADER_DELIVERY_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let Ok(body) = Limited::new(request.into_body(), MAX_BODY).collect().await else {
                return reply(StatusCode::PAYLOAD_TOO_LARGE, Vec::new());
            };
            state.record(id, &body.to_bytes());
            reply(StatusCode::OK, b"ok\n".to_vec())
        }
        _ => reply(StatusCode::METHOD_NOT_ALLOWED, Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_stop_at_the_cap_and_the_rest_is_counted() {
        let state = State {
            max_records: 2,
            log: Mutex::new(Log::default()),
        };
        for id in ["a", "b", "c"] {
            state.record(id.to_owned(), b"hello");
        }
        let log = state.log.lock().unwrap();
        assert_eq!((log.received, log.dropped), (3, 1));
        let ids: Vec<&str> = log.deliveries.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(
            log.deliveries[0].body_sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }
}
