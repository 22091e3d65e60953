//! Connections to the instances: each [`Target`] keeps its own small pool of idle keep-alive
//! HTTP/1.1 connections (hyper's `client::conn::http1`), and one attempt is sent here.
//!
//! Written by hand instead of hyper-util's legacy pooled `Client` because that client costs the
//! router per request what it does not need: a pool keyed by scheme and authority behind one
//! lock for all instances, and a spawned task per response that waits for the connection to be
//! idle again before it goes back to the pool. Here the pool belongs to the instance, and a
//! connection goes back when the response body it carried has ended (see [`UpstreamBody`]).

use std::{
    collections::VecDeque,
    error::Error as StdError,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Request, Response,
    body::{Body, Frame, Incoming, SizeHint},
    client::conn::http1::{self, SendRequest},
};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpStream, time::Instant};

use super::pool::Target;

/// A connection idle longer than this is closed instead of reused (instances' own keep-alive
/// timeouts are usually longer; a connection they closed meanwhile is skipped anyway).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most idle connections kept per instance; beyond it a finished connection is closed.
const MAX_IDLE: usize = 256;

type Sender = SendRequest<Full<Bytes>>;

/// One instance's idle connections, most recently used last (reused first, so the fewest stay
/// warm and the oldest age out at the front).
#[derive(Debug, Default)]
pub struct Connections {
    idle: Mutex<VecDeque<(Sender, Instant)>>,
}

impl Connections {
    fn idle(&self) -> std::sync::MutexGuard<'_, VecDeque<(Sender, Instant)>> {
        // Only senders and times in here: still usable after a panic elsewhere.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn checkout(&self) -> Option<Sender> {
        let mut idle = self.idle();
        while let Some((sender, since)) = idle.pop_back() {
            if !sender.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    }

    fn release(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle();
        while idle.front().is_some_and(|(_, since)| now.duration_since(*since) >= IDLE_TIMEOUT) {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back((sender, now));
        }
    }

    /// Idle connections held now (for `/status`).
    pub fn idle_count(&self) -> usize {
        self.idle().len()
    }
}

/// Why an attempt got no response.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made: nothing reached the instance, so any method may be retried.
    Connect(String),
    /// The request went out (or may have) and the exchange failed.
    Exchange(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(reason) => f.write_str(reason),
            SendError::Exchange(error) => {
                write!(f, "{error}")?;
                let mut source = error.source();
                while let Some(cause) = source {
                    write!(f, ": {cause}")?;
                    source = cause.source();
                }
                Ok(())
            }
        }
    }
}

/// Sends `request` (origin-form URI, `Host` set) to `target` on an idle connection, or a new one.
/// A pooled connection that turns out to be closing hands the request back unsent; it then goes
/// on the next connection — so an instance's keep-alive timeout never costs a client an error.
pub async fn send(
    target: &Arc<Target>,
    mut request: Request<Full<Bytes>>,
    connect_timeout: Duration,
) -> Result<Response<UpstreamBody>, SendError> {
    while let Some(mut sender) = target.connections.checkout() {
        if sender.ready().await.is_err() {
            continue;
        }
        match sender.try_send_request(request).await {
            Ok(response) => return Ok(lease(response, sender, target)),
            Err(mut error) => match error.take_message() {
                Some(unsent) => request = unsent,
                None => return Err(SendError::Exchange(error.into_error())),
            },
        }
    }
    let mut sender = connect(target, connect_timeout).await?;
    match sender.send_request(request).await {
        Ok(response) => Ok(lease(response, sender, target)),
        Err(error) => Err(SendError::Exchange(error)),
    }
}

async fn connect(target: &Target, timeout: Duration) -> Result<Sender, SendError> {
    let address = target.authority.as_str();
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(SendError::Connect(format!("tcp connect to {address}: {error}"))),
        Err(_) => {
            return Err(SendError::Connect(format!(
                "tcp connect to {address}: no connection within {}",
                humantime::format_duration(timeout)
            )));
        }
    };
    // Requests go out at once instead of waiting on Nagle's algorithm for an ACK.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY on an upstream connection");
    }
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|error| SendError::Connect(format!("HTTP/1.1 handshake with {address}: {error}")))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "an upstream connection ended with an error");
        }
    });
    Ok(sender)
}

fn lease(response: Response<Incoming>, sender: Sender, target: &Arc<Target>) -> Response<UpstreamBody> {
    response.map(|body| UpstreamBody { body, lease: Some((sender, target.clone())) })
}

/// An instance's response body on its way to the client. Its connection goes back to the
/// instance's pool once the body has ended; a body dropped before its end (client gone, error,
/// a 5xx replaced by a retry) closes the connection instead, as it can't carry another request.
pub struct UpstreamBody {
    body: Incoming,
    lease: Option<(Sender, Arc<Target>)>,
}

impl UpstreamBody {
    fn give_back(&mut self) {
        if let Some((sender, target)) = self.lease.take() {
            target.connections.release(sender);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        match &frame {
            // hyper's server stops polling once `is_end_stream` says so: look after each frame.
            Some(Ok(_)) if self.body.is_end_stream() => self.give_back(),
            Some(Ok(_)) => {}
            None => self.give_back(),
            Some(Err(_)) => self.lease = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // An empty body (204, HEAD, `content-length: 0`) is never polled: it ended already.
        if self.body.is_end_stream() {
            self.give_back();
        }
    }
}
