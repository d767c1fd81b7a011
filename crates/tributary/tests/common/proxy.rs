//! A TCP forwarder a test puts between a node and one of the shared services, to take the
//! service away from that node alone — as if it were stopped, or hung — and give it back,
//! while other tests keep using the service.

use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the proxy does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forwards it to the service.
    Forward,
    /// Accepts it and never answers: a server that hangs.
    Hang,
}

/// A TCP proxy on 127.0.0.1 in front of `target`.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    running: Mutex<Option<Running>>,
}

/// The listener's task, and the token that ends every connection it accepted.
#[derive(Debug)]
struct Running {
    accept: JoinHandle<()>,
    connections: CancellationToken,
}

impl Proxy {
    /// Starts forwarding a free port of 127.0.0.1 to `target` (`host:port`).
    pub async fn start(target: &str) -> Self {
        let target = tokio::net::lookup_host(target)
            .await
            .unwrap()
            .next()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Self {
            addr,
            target,
            running: Mutex::new(None),
        };
        proxy.serve(listener, Mode::Forward);
        proxy
    }

    /// Its address, `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Closes the port and every connection: the service looks stopped (connections are
    /// refused).
    pub async fn cut(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some(Running {
            accept,
            connections,
        }) = running
        {
            accept.abort();
            let _ = accept.await; // the listener is closed once the task is gone
            connections.cancel();
        }
    }

    /// Closes every connection, then accepts new ones and never answers them: the service
    /// looks hung.
    pub async fn hang(&self) {
        self.cut().await;
        self.serve(self.listen().await, Mode::Hang);
    }

    /// Forwards new connections to the service again (closing those held while it hung).
    pub async fn restore(&self) {
        self.cut().await;
        self.serve(self.listen().await, Mode::Forward);
    }

    /// Listens on the proxy's port again.
    async fn listen(&self) -> TcpListener {
        // Tokio sets SO_REUSEADDR: the port of the closed listener is free at once.
        TcpListener::bind(self.addr).await.unwrap()
    }

    fn serve(&self, listener: TcpListener, mode: Mode) {
        let connections = CancellationToken::new();
        let token = connections.clone();
        let target = self.target;
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(connection(client, target, mode, token.clone()));
            }
        });
        *self.running.lock().unwrap() = Some(Running {
            accept,
            connections,
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(running) = self.running.lock().unwrap().take() {
            running.accept.abort();
            running.connections.cancel();
        }
    }
}

/// Serves one connection until either side closes it or `ended` is cancelled.
async fn connection(
    mut client: TcpStream,
    target: SocketAddr,
    mode: Mode,
    ended: CancellationToken,
) {
    if mode == Mode::Hang {
        ended.cancelled().await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        () = ended.cancelled() => {}
    }
}
