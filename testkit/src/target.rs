//! A real HTTP service for health-check tests: answers `/healthz` with a status the test sets,
//! and can be stopped (connection refused) and started again on the same port.

use std::sync::{
    Arc,
    atomic::{AtomicU16, Ordering},
};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

pub struct TargetServer {
    pub port: u16,
    status: Arc<AtomicU16>,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl TargetServer {
    /// Starts answering 200 on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mut server = Self { port, status: Arc::new(AtomicU16::new(200)), running: None };
        server.serve(listener);
        server
    }

    /// What `/healthz` answers from now on.
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Stops listening: probes get "connection refused".
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.expect("the port is free again");
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let status = self.status.clone();
        let app = axum::Router::new().route(
            "/healthz",
            axum::routing::get(move || {
                let status = status.load(Ordering::SeqCst);
                async move {
                    (
                        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK),
                        "target says hello",
                    )
                }
            }),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        self.running = Some((stop, task));
    }
}
