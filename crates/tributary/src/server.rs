//! The HTTP server's life: it serves until shutdown, then drains, so that a node taken out
//! of a load balancer loses no request.
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

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_gateway::Drain;

/// How a node drains on shutdown: `[http] drain_delay` and `drain_timeout`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DrainTimes {
    /// How long the node keeps serving after `/readyz` turned 503.
    pub delay: Duration,
    /// How long the requests in flight when the listener closes may take to finish.
    pub timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then drains as the module
/// says.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    drain: Drain,
    times: DrainTimes,
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
    let server = axum::serve(listener, router).with_graceful_shutdown(close_listener);
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(times.delay + times.timeout).await;
    };
    tokio::select! {
        served = server => {
            served?;
            tracing::info!("HTTP server drained");
        }
        () = deadline => tracing::warn!(
            drain_timeout_ms = duration_ms(times.timeout),
            cut_off = drain.in_flight(),
            "drain timeout: cutting off the requests still in flight"
        ),
    }
    Ok(())
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
