//! The HTTP/1 accept loop `creel mcp --http`, `creel ui` and `creel fake-model` share: one
//! task per connection (at most [`MAX_CONNECTIONS`], each with a deadline for its request
//! heads), until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

/// Connections served at once; more are answered 503 and closed.
const MAX_CONNECTIONS: usize = 1024;
/// How long a connection may take to send a request's head (a slow or silent client must not
/// hold a connection forever).
const HEADER_READ: Duration = Duration::from_secs(30);

/// The body of the answer to a refused connection.
const REFUSED: &str =
    "creel: this server admits only its owner's processes; other users need the server's token\n";

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// Decides from (peer, local) addresses whether a connection is served at all; `None`: all are.
pub type Admit = Option<std::sync::Arc<dyn Fn(SocketAddr, SocketAddr) -> bool + Send + Sync>>;

/// Serves connections from `listener` with the service `make` builds for each, until the
/// process is asked to stop. Connections `admit` refuses get a 403 and are closed unread.
pub async fn serve_until_shutdown<S, B>(
    listener: tokio::net::TcpListener,
    admit: Admit,
    make: impl Fn() -> S,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if let Some(admit) = &admit {
                    let local = stream.local_addr().unwrap_or(peer);
                    if !admit(peer, local) {
                        tracing::info!("refused a connection from {peer}: not this user's");
                        let answer = format!(
                            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{REFUSED}",
                            REFUSED.len()
                        );
                        // A fresh socket's send buffer takes it whole: this never waits.
                        let _ = stream.try_write(answer.as_bytes());
                        continue;
                    }
                }
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!("refused a connection from {peer}: {MAX_CONNECTIONS} are open");
                    let busy = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                    let _ = stream.try_write(busy.as_bytes());
                    continue;
                };
                let svc = make();
                tokio::spawn(async move {
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(HEADER_READ)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await
                    {
                        tracing::debug!("connection from {peer}: {e}");
                    }
                    drop(slot);
                });
            }
            _ = &mut shutdown => return,
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
