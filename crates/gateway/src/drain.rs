//! A node's drain on shutdown, as the router sees it: whether the node is draining, and how
//! many requests it is handling.
//!
//! Contract:
//! - [`Drain::start`] is one-way. From then on `/readyz` answers a 503 problem
//!   (`shutting-down`) at once, without pinging any dependency, so that load balancers
//!   stop sending the node new requests; every other route serves as before.
//! - [`Drain::in_flight`] counts the requests the router is handling, from the moment it
//!   receives one until its response is ready (or the client gives up on it). A WebSocket
//!   upgrade (`/graphql` subscriptions) counts until its `101` answer only: the drain does
//!   not wait for open WebSockets. They are closed when the drain starts instead
//!   ([`Drain::started`]): each gets a close frame `1001` (going away), so that its client
//!   reconnects to another node.
//!
//! When to start draining, how long to keep serving, and when to close the listener are
//! the server's business (the binary's).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A node's drain state, shared by its router and its server. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    /// Cancelled when the drain starts.
    started: CancellationToken,
}

impl Drain {
    /// Starts draining: `/readyz` answers 503 from now on.
    pub fn start(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
        self.inner.started.cancel();
    }

    /// Completes when [`Drain::start`] is called (at once if it was).
    pub fn started(&self) -> WaitForCancellationFutureOwned {
        self.inner.started.clone().cancelled_owned()
    }

    /// Whether [`Drain::start`] was called.
    #[must_use]
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    /// The requests being handled now.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
    }
}

/// Decrements the count of requests in flight when dropped: when the response is ready,
/// or when the request's future is dropped (its client went away).
struct InFlight(Drain);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inner.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The middleware that counts the requests in flight.
pub(crate) async fn count_in_flight(
    State(drain): State<Drain>,
    request: Request,
    next: Next,
) -> Response {
    drain.inner.in_flight.fetch_add(1, Ordering::Relaxed);
    let _in_flight = InFlight(drain);
    next.run(request).await
}
