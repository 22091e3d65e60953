//! A small Server-Sent Events reader for tests: connects with a token (and optionally
//! `Last-Event-ID`) and hands out events one at a time, with a deadline.

use std::time::Duration;

/// One event as it arrived on the wire.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseMessage {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl SseMessage {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("event data is JSON ({e}): {}", self.data))
    }
}

pub struct SseClient {
    response: reqwest::Response,
    buffer: String,
}

impl SseClient {
    /// Opens `url` with a bearer token; panics unless the answer is a 200 event stream.
    pub async fn connect(url: &str, token: &str, last_event_id: Option<&str>) -> Self {
        let client = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build().expect("client");
        let mut request = client.get(url).bearer_auth(token).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("the event stream answers");
        assert_eq!(response.status(), 200, "event stream status");
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(content_type.starts_with("text/event-stream"), "content type {content_type}");
        Self { response, buffer: String::new() }
    }

    /// The next event (comments skipped), or a panic naming `what` after `within`.
    pub async fn next(&mut self, what: &str, within: Duration) -> SseMessage {
        tokio::time::timeout(within, self.read_one())
            .await
            .unwrap_or_else(|_| panic!("no event within {within:?} while waiting for {what}"))
    }

    /// Skips events until one of type `event` satisfies `matches`.
    pub async fn next_matching(
        &mut self,
        what: &str,
        within: Duration,
        matches: impl Fn(&SseMessage) -> bool,
    ) -> SseMessage {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message = self.next(what, left).await;
            if matches(&message) {
                return message;
            }
        }
    }

    /// Whether the server ends the stream within `within` (events before the end are skipped).
    pub async fn ended(&mut self, within: Duration) -> bool {
        let drain = async { while let Ok(Some(_)) = self.response.chunk().await {} };
        tokio::time::timeout(within, drain).await.is_ok()
    }

    async fn read_one(&mut self) -> SseMessage {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut message = SseMessage::default();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("id:") {
                        message.id = Some(value.trim().to_owned());
                    } else if let Some(value) = line.strip_prefix("event:") {
                        message.event = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push(value.strip_prefix(' ').unwrap_or(value).to_owned());
                    }
                }
                if message.event.is_empty() && data.is_empty() {
                    continue; // a keep-alive comment
                }
                message.data = data.join("\n");
                return message;
            }
            let chunk = self.response.chunk().await.expect("the stream stays readable").expect("the stream stays open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
