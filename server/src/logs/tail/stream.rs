//! `GET /api/v1/logs/tail`: one viewer's Server-Sent Events. `line` events carry a stored line
//! (`id:` its id), `missed` says how many lines the viewer skipped after falling behind, and
//! `heartbeat` (at once, then every 5 s) says the stream is alive and whether this server is
//! receiving lines. No replay: a tail shows what arrives from now on; search has the past.

use std::{convert::Infallible, time::Duration};

use app::model::logs::{LogLevel, LogLine, TailHeartbeat, TailMissed};
use axum::{
    extract::State,
    response::{
        IntoResponse,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use serde::Deserialize;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    filter::{TailFilter, TextQuery},
    hub::Viewer,
};
use crate::{
    auth::{Authorized, Read},
    http::error::{ApiError, ApiQuery, ErrorBody},
    logs::text_param,
    state::AppState,
};

/// How often a `heartbeat` event is sent.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// How long a new viewer waits for this server's listener before its first heartbeat says
/// `listening: false`.
const LISTENER_WAIT: Duration = Duration::from_secs(3);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(tail_logs))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct TailParams {
    /// Minimum level: `warning` shows warning, error and fatal. Default debug (all).
    #[param(inline)]
    level: Option<LogLevel>,
    cluster: Option<String>,
    node: Option<String>,
    service: Option<String>,
    instance: Option<String>,
    trace_id: Option<String>,
    /// Text over the message, as in search: words (all must appear), "a phrase", `or`, `-word`.
    q: Option<String>,
}

/// New log lines as Server-Sent Events, for as long as the client stays: `event: line`
/// (`id:` the line id, `data:` the line as JSON), `event: missed` (`{missed, at}`: the viewer
/// fell behind and skipped that many lines; search still has them) and `event: heartbeat`
/// (`{at, listening}`, at once and every 5 s). Viewers with the same filter share one
/// subscription on the server.
#[utoipa::path(get, path = "/logs/tail", tag = "logs", params(TailParams),
    responses((status = 200, description = "An endless stream of new lines", content_type = "text/event-stream", body = LogLine),
              (status = 400, description = "A parameter is wrong; the detail names it", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
async fn tail_logs(
    _reader: Authorized<Read>,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<TailParams>,
) -> Result<impl IntoResponse, ApiError> {
    let filter = TailFilter {
        level: params.level.unwrap_or(LogLevel::Debug),
        cluster: text_param("cluster", params.cluster)?,
        node: text_param("node", params.node)?,
        service: text_param("service", params.service)?,
        instance: text_param("instance", params.instance)?,
        trace_id: text_param("trace_id", params.trace_id)?,
        q: text_param("q", params.q)?.as_deref().and_then(TextQuery::parse),
    };
    // Joined before answering: a line committed after the client sees the first heartbeat
    // reaches it.
    let viewer = state.log_tail.subscribe(filter);
    let (sender, receiver) = mpsc::channel(64);
    tokio::spawn(feed(state, viewer, sender));
    Ok(Sse::new(ReceiverStream::new(receiver)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

type Out = mpsc::Sender<Result<SseEvent, Infallible>>;

/// Writes one viewer's stream until it goes away or the server stops.
async fn feed(state: AppState, mut viewer: Viewer, out: Out) {
    let mut listening = state.log_tail.listening();
    let _ = tokio::time::timeout(LISTENER_WAIT, listening.wait_for(|up| *up)).await;
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        let event = tokio::select! {
            () = state.stopping.cancelled() => return,
            () = out.closed() => return,
            _ = heartbeat.tick() => {
                let beat = TailHeartbeat { at: chrono::Utc::now(), listening: *listening.borrow() };
                SseEvent::default().event("heartbeat").json_data(&beat)
            }
            received = viewer.lines.recv() => match received {
                Ok(line) => SseEvent::default().id(line.id.to_string()).event("line").json_data(&*line),
                Err(RecvError::Lagged(missed)) => {
                    viewer.missed(missed);
                    SseEvent::default().event("missed").json_data(TailMissed { missed, at: chrono::Utc::now() })
                }
                Err(RecvError::Closed) => return,
            },
        };
        match event {
            Ok(event) => {
                // A full queue (a slow client) waits here; shutdown still ends it.
                let sent = tokio::select! {
                    () = state.stopping.cancelled() => return,
                    sent = out.send(Ok(event)) => sent,
                };
                if sent.is_err() {
                    return;
                }
            }
            Err(error) => tracing::warn!(%error, "a live-tail event could not be encoded; skipped"),
        }
    }
}
