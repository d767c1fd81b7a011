//! The HTTP server's life: it serves HTTP/1.1 connections with hyper until shutdown, then
//! drains, so that a node taken out of a load balancer loses no request.
//!
//! Each connection is served by hyper's HTTP/1 server (configured here, as `axum::serve`
//! allows no configuration), with:
//! - a header read timeout, `[http] header_timeout`: a connection whose next request head
//!   (request line and header fields) has not arrived in full that long after the server
//!   started waiting for it is closed, with no answer. It is also how long an idle
//!   keep-alive connection stays open;
//! - a limit on the request head, [`SERVER_MAX_HEAD_BYTES`]: hyper answers a larger head
//!   with a 431 (or a 414 for a target over 64 KiB) and closes the connection;
//! - the client's address as a [`ConnectInfo`] extension of each request, for its log line.
//!
//! hyper answers some requests itself, before the router sees them, and lets nobody shape
//! those answers: a request line or header that does not parse (400), a head over the
//! limits above or with more than 100 header fields (431, 414). They have an empty body, not
//! a problem document, and close the connection; each is logged here, with the client's
//! address and hyper's reason (`request refused by the HTTP server`). Below those limits
//! the gateway answers first, with problem documents (`tributary_gateway::edge`).
//!
//! On shutdown (SIGTERM, Ctrl-C, or another role failing):
//! 1. `/readyz` answers 503 at once ([`Drain::start`]), while every other route keeps
//!    serving for `[http] drain_delay`: the time load balancers need to see it and stop
//!    sending this node new requests (the binary passes no delay for a node serving no
//!    `/v1` route: load balancers do not route to it);
//! 2. the listener closes (new connections are refused), idle keep-alive connections are
//!    closed, and each request in flight is answered before its connection closes;
//! 3. the server returns once every connection is closed, or after `[http] drain_timeout`,
//!    cutting off the requests still running (logged with their number).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tributary_gateway::Drain;
use tributary_gateway::edge::SERVER_MAX_HEAD_BYTES;

/// How a node drains on shutdown: `[http] drain_delay` and `drain_timeout`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DrainTimes {
    /// How long the node keeps serving after `/readyz` turned 503.
    pub delay: Duration,
    /// How long the requests in flight when the listener closes may take to finish.
    pub timeout: Duration,
}

/// How connections are served: `[http] header_timeout`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// How long the server waits for a request head, in full.
    pub header_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then drains, as the module
/// says.
pub(crate) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    drain: Drain,
    times: DrainTimes,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let close_listener = {
        let (drain, shutdown) = (drain.clone(), shutdown.clone());
        async move {
            shutdown.cancelled().await;
            drain.start();
            tracing::info!(
                drain_delay_ms = duration_ms(times.delay),
                in_flight = drain.in_flight(),
                "draining: /readyz answers 503; still serving until the drain delay is over"
            );
            tokio::time::sleep(times.delay).await;
            tracing::info!(
                in_flight = drain.in_flight(),
                "listener closed: answering the requests in flight"
            );
        }
    };
    tokio::pin!(close_listener);

    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(SERVER_MAX_HEAD_BYTES);
    let builder = Arc::new(builder);
    // Cancelled when the listener closes: each connection then finishes the request it
    // is serving, if any, and closes.
    let closing = CancellationToken::new();
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
            // Reaps finished connections, so that the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = &mut close_listener => break,
        };
        connections.spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            Arc::clone(&builder),
            closing.clone(),
        ));
    }
    drop(listener);
    closing.cancel();

    let deadline = tokio::time::sleep(times.timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            joined = connections.join_next() => if joined.is_none() {
                tracing::info!("HTTP server drained");
                break;
            },
            () = &mut deadline => {
                tracing::warn!(
                    drain_timeout_ms = duration_ms(times.timeout),
                    cut_off = drain.in_flight(),
                    "drain timeout: cutting off the requests still in flight"
                );
                // Dropping the set aborts the connections still open.
                break;
            }
        }
    }
    Ok(())
}

/// Serves one connection until the client closes it, hyper refuses it, or `closing` asks
/// it to finish; logs why hyper refused it, if it did.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    builder: Arc<http1::Builder>,
    closing: CancellationToken,
) {
    let served = Arc::new(AtomicUsize::new(0));
    let service = {
        let served = Arc::clone(&served);
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            served.fetch_add(1, Ordering::Relaxed);
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request.map(Body::new))
        })
    };
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = closing.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        log_refusal(&error, peer, served.load(Ordering::Relaxed));
    }
}

/// Logs a connection hyper ended with an error: what it refused (a 400, 414 or 431 it
/// answered itself, or a head that did not arrive in time) at `INFO`, like the gateway's
/// refusals; the rest (a client that went away) at `DEBUG`.
fn log_refusal(error: &hyper::Error, peer: SocketAddr, served: usize) {
    let client = peer.ip();
    if error.is_parse_too_large() {
        tracing::info!(
            client.ip = %client,
            error = %error,
            limit_bytes = SERVER_MAX_HEAD_BYTES,
            "request refused by the HTTP server: the head is too large (answered 414 or 431, no body)"
        );
    } else if error.is_parse() {
        tracing::info!(
            client.ip = %client,
            error = %error,
            "request refused by the HTTP server: the head does not parse (answered 400, no body)"
        );
    } else if error.is_timeout() && served == 0 {
        tracing::info!(
            client.ip = %client,
            "connection closed: no complete request head within [http] header_timeout"
        );
    } else {
        // After a first request, a header timeout is most often an idle keep-alive
        // connection; the rest are clients that closed or reset it.
        tracing::debug!(client.ip = %client, error = %error, served, "connection ended");
    }
}

/// What to do when accepting a connection fails: a connection reset before it was accepted
/// is the client's business; anything else (such as too many open files) is logged, and the
/// listener pauses for a moment, as `axum::serve` does.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %error, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
