//! The router's client listener: a hyper HTTP/1.1 server connection per accepted socket, each
//! request handed straight to [`proxy::forward`]. Every path has that one handler, so axum's
//! routing, extension maps and boxed bodies (a cost per request) have nothing to do here; the
//! admin listener keeps axum.

use std::{convert::Infallible, future::Future, io, sync::Arc, time::Duration};

use hyper::{server::conn::http1, service::service_fn};
use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown};
use tokio::net::TcpListener;

use super::{
    headers::Client,
    proxy::{self, Proxy},
};

/// Serves until `stop` completes; then accepts nothing more, lets each connection finish the
/// request it is on, and returns once all are closed.
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, stop: impl Future<Output = ()>) {
    let connections = GracefulShutdown::new();
    let builder = http1::Builder::new();
    tokio::pin!(stop);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Small answers go out at once instead of waiting on Nagle's algorithm for an ACK.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on a client connection");
        }
        let proxy = proxy.clone();
        let from = Client::new(client.ip());
        let service = service_fn(move |request| {
            let (proxy, from) = (proxy.clone(), from.clone());
            async move { Ok::<_, Infallible>(proxy::forward(&proxy, &from, request).await) }
        });
        let connection = connections.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %client, "a client connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
}

/// A failed `accept`: one connection's trouble (reset before accepted) is skipped; anything else
/// (out of file descriptors) is logged and waited out for a second, as axum's `serve` does,
/// rather than spinning on an error that persists.
async fn accept_failed(error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "the router could not accept a connection; trying again in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
