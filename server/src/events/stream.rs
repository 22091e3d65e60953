//! `GET /api/v1/events`: the event stream as Server-Sent Events. A client that reconnects with
//! `Last-Event-ID` (browsers' `EventSource` does it by itself) first gets what it missed from
//! the table, then the live events; a `heartbeat` event every few seconds says the stream is
//! alive and how far it has got.

use std::{convert::Infallible, sync::Arc, time::Duration};

use app::model::events::{Event, StreamHeartbeat};
use axum::{
    extract::State,
    http::HeaderMap,
    response::{
        IntoResponse,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use serde::Deserialize;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{Authorized, Read},
    http::error::{ApiError, ApiQuery, ErrorBody},
    state::AppState,
};

/// How often a `heartbeat` event is sent.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// Missed events are read from the table this many at a time.
const REPLAY_BATCH: i64 = 1000;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct Resume {
    /// Resume after this event id (the same as the `Last-Event-ID` header, for clients that
    /// can't set headers). The header wins when both are given.
    after: Option<i64>,
}

/// Live events as Server-Sent Events: `event:` is the type (`instance_registered`,
/// `health_changed`, `breaker_changed`, …, and `heartbeat` every 5 s), `id:` the event id,
/// `data:` the event as JSON.
#[utoipa::path(get, path = "/events", tag = "events", params(Resume,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event id")),
    responses((status = 200, description = "An endless stream of events", content_type = "text/event-stream", body = Event),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
async fn events(
    _reader: Authorized<Read>,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(resume): ApiQuery<Resume>,
) -> Result<impl IntoResponse, ApiError> {
    let last_seen = match headers.get("last-event-id") {
        Some(value) => Some(value.to_str().ok().and_then(|v| v.trim().parse::<i64>().ok()).ok_or_else(|| {
            ApiError::BadRequest("Last-Event-ID: expected the numeric id of the last event received".into())
        })?),
        None => resume.after,
    };
    let (sender, receiver) = mpsc::channel(256);
    tokio::spawn(feed(state, last_seen, sender));
    // The heartbeat event carries data; this keep-alive comment only guards idle proxies.
    Ok(Sse::new(ReceiverStream::new(receiver)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Writes one client's stream until it goes away.
async fn feed(state: AppState, last_seen: Option<i64>, out: mpsc::Sender<Result<SseEvent, Infallible>>) {
    // Subscribe before reading the table, so nothing falls between the replay and the live feed.
    let mut live = state.events.subscribe();
    let mut sent = match last_seen {
        Some(after) => match replay(&state, after, &out).await {
            Some(sent) => sent,
            None => return,
        },
        None => state.events.last_id(),
    };
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        let next = tokio::select! {
            // Shutting down: end the stream; the client reconnects (to another replica) and resumes.
            () = state.stopping.cancelled() => return,
            received = live.recv() => received,
            _ = heartbeat.tick() => {
                let beat = StreamHeartbeat { at: chrono::Utc::now(), last_event_id: sent.max(state.events.last_id()) };
                let Ok(event) = SseEvent::default().event("heartbeat").json_data(&beat) else { return };
                if out.send(Ok(event)).await.is_err() {
                    return;
                }
                continue;
            }
        };
        match next {
            Ok(event) if event.id <= sent => {}
            Ok(event) => {
                sent = event.id;
                if !send(&out, &event).await {
                    return;
                }
            }
            // Fell behind the in-process buffer: catch up from the table.
            Err(RecvError::Lagged(_)) => match replay(&state, sent, &out).await {
                Some(caught_up) => sent = caught_up,
                None => return,
            },
            Err(RecvError::Closed) => return,
        }
    }
}

/// Sends the stored events after `after`; returns the last id sent (or `after`), or `None` if
/// the client went away.
async fn replay(state: &AppState, after: i64, out: &mpsc::Sender<Result<SseEvent, Infallible>>) -> Option<i64> {
    let mut sent = after;
    loop {
        let missed = match crate::events::since(&state.db, sent, REPLAY_BATCH).await {
            Ok(missed) => missed,
            Err(error) => {
                tracing::warn!(%error, after = sent, "could not replay missed events; continuing live");
                return Some(sent);
            }
        };
        let done = missed.len() < usize::try_from(REPLAY_BATCH).unwrap_or(usize::MAX);
        for event in missed {
            sent = event.id;
            if !send(out, &Arc::new(event)).await {
                return None;
            }
        }
        if done {
            return Some(sent);
        }
    }
}

async fn send(out: &mpsc::Sender<Result<SseEvent, Infallible>>, event: &Event) -> bool {
    match SseEvent::default().id(event.id.to_string()).event(event.kind.name()).json_data(event) {
        Ok(sse) => out.send(Ok(sse)).await.is_ok(),
        Err(error) => {
            tracing::warn!(%error, id = event.id, "an event could not be encoded; skipped");
            true
        }
    }
}
