//! `bench-app`: the app behind the sidecar in `bench/queue-mode.sh`. It answers every POST
//! with 200 `ok` after `--delay` (0 for a fast app, `200ms` for a slow one) and counts what
//! reached it, so the benchmark can tell how fast queue mode actually delivered, and whether
//! every delivery arrived exactly once:
//!
//! | request | answer |
//! |---|---|
//! | `GET /_bench/stats` | `{"received", "unique", "inFlight", "maxInFlight", "firstUs", "lastUs", "slots"}` since the last reset: POSTs answered, distinct `X-Hookguard-Delivery-Id`s among them, POSTs at the app now and at most at once, Unix µs of the first and last arrival, and the answers per 100 ms from the first one |
//! | `POST /_bench/reset` | zeroes the counters (and forgets the IDs) |
//! | any other POST | a delivery: counted, answered 200 `ok` after the delay |
//!
//! Loopback only, no disk; the IDs of one phase are kept in memory until the next reset.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use hookguard_api::names::HEADER_DELIVERY_ID;
use hookguard_api::units::parse_duration;

#[derive(Debug, Parser)]
#[command(about = "Benchmark app for Hookguard: answers 200 after a delay and counts deliveries")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18180")]
    listen: SocketAddr,
    /// Time to work before answering, e.g. `0`, `200ms`, `1s`.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    delay: Duration,
}

/// The counters of one phase (since the last reset).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    received: u64,
    unique: u64,
    in_flight: u64,
    max_in_flight: u64,
    first_us: Option<u64>,
    last_us: Option<u64>,
    /// Answers per [`SLOT_US`] from `first_us`, for at most [`SLOTS_MAX`] slots.
    slots: Vec<u32>,
}

/// The width of a slot of `Stats::slots`: 100 ms.
const SLOT_US: u64 = 100_000;
/// Slots kept: one hour.
const SLOTS_MAX: usize = 36_000;

#[derive(Debug, Default)]
struct State {
    stats: Stats,
    ids: HashSet<String>,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl State {
    /// A delivery arrived.
    fn arrive(&mut self) {
        self.stats.in_flight += 1;
        self.stats.max_in_flight = self.stats.max_in_flight.max(self.stats.in_flight);
    }

    /// A delivery is answered 200: counted, with its ID.
    fn answer(&mut self, id: Option<String>, at_us: u64) {
        self.stats.in_flight = self.stats.in_flight.saturating_sub(1);
        self.stats.received += 1;
        if id.is_some_and(|id| self.ids.insert(id)) {
            self.stats.unique += 1;
        }
        let first = *self.stats.first_us.get_or_insert(at_us);
        self.stats.last_us = Some(at_us);
        if let Ok(slot) = usize::try_from(at_us.saturating_sub(first) / SLOT_US)
            && slot < SLOTS_MAX
        {
            if self.stats.slots.len() <= slot {
                self.stats.slots.resize(slot + 1, 0);
            }
            self.stats.slots[slot] += 1;
        }
    }

    /// Forgets the phase; what is at the app now stays counted as in flight.
    fn reset(&mut self) {
        let in_flight = self.stats.in_flight;
        *self = State::default();
        self.stats.in_flight = in_flight;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let state: Shared = Arc::default();
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!(
        "bench-app: listening on {}, delay {:?}",
        listener.local_addr()?,
        args.delay
    );
    let mut term = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                let delay = args.delay;
                let service = service_fn(move |request| serve(Arc::clone(&state), delay, request));
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(())
}

async fn serve(
    state: Shared,
    delay: Duration,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        Ok(response)
    };
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/_bench/stats") => match serde_json::to_vec(&lock(&state).stats) {
            Ok(json) => reply(StatusCode::OK, json),
            Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, Vec::new()),
        },
        (&Method::POST, "/_bench/reset") => {
            lock(&state).reset();
            reply(StatusCode::OK, b"reset\n".to_vec())
        }
        (&Method::POST, _) => {
            lock(&state).arrive();
            let id = request
                .headers()
                .get(HEADER_DELIVERY_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let read = request.into_body().collect().await;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            // Counted as received only when answered 200, as the sidecar sees it.
            if read.is_err() {
                let mut state = lock(&state);
                state.stats.in_flight = state.stats.in_flight.saturating_sub(1);
                return reply(StatusCode::BAD_REQUEST, Vec::new());
            }
            lock(&state).answer(id, now_us());
            reply(StatusCode::OK, b"ok\n".to_vec())
        }
        _ => reply(StatusCode::METHOD_NOT_ALLOWED, Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_deliveries_and_distinct_ids_until_reset() {
        let mut state = State::default();
        for (id, at) in [("a", 7), ("b", 7), ("a", 250_007)] {
            state.arrive();
            state.answer(Some(id.to_owned()), at);
        }
        state.arrive();
        assert_eq!(
            (
                state.stats.received,
                state.stats.unique,
                state.stats.in_flight
            ),
            (3, 2, 1)
        );
        assert_eq!(state.stats.max_in_flight, 1);
        assert_eq!(state.stats.slots, [2, 0, 1]);
        state.reset();
        assert_eq!(
            (
                state.stats.received,
                state.stats.in_flight,
                state.stats.first_us
            ),
            (0, 1, None)
        );
    }
}
