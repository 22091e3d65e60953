//! The demo's control API: list the fleet, set an instance's failure mode, stop and start
//! instances and whole nodes. Loopback only by default; it has no authentication because it can
//! do nothing a person at the demo's terminal couldn't (it only acts on the demo's own children).

use std::{future::Future, sync::Arc};

use anyhow::Context;
use axum::{
    Json, Router,
    extract::State,
    response::{Html, IntoResponse, Response},
    routing::{get, post, put},
};

use super::{
    fleet::{Action, Fleet, MemberStatus},
    mode::ModeBody,
};
use crate::http::error::{ApiError, ApiPath};

type SharedFleet = Arc<Fleet>;

pub fn router(fleet: SharedFleet) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/fleet", get(list))
        .route("/instances/{id}/mode", put(set_mode))
        .route("/instances/{id}/start", post(start_instance))
        .route("/instances/{id}/stop", post(stop_instance))
        .route("/instances/{id}/kill", post(kill_instance))
        .route("/nodes/{node}/stop", post(stop_node))
        .route("/nodes/{node}/start", post(start_node))
        .fallback(not_found)
        .with_state(fleet)
}

/// Serves the control API until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    fleet: SharedFleet,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, router(fleet)).with_graceful_shutdown(shutdown).await.context("the demo control API failed")
}

/// `GET /fleet`: every instance, its process state and its mode.
async fn list(State(fleet): State<SharedFleet>) -> Json<Vec<MemberStatus>> {
    Json(fleet.list().await)
}

/// `PUT /instances/{id}/mode` with `{"mode": "healthy" | "slow" | "error" | "exit"}`.
async fn set_mode(
    State(fleet): State<SharedFleet>,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Json<MemberStatus>, ApiError> {
    let ModeBody { mode } = super::mode::parse_mode_body(&body).map_err(ApiError::Unprocessable)?;
    Ok(Json(fleet.set_mode(&id, mode).await?))
}

/// `POST /instances/{id}/start`: starts it if it isn't running (idempotent).
async fn start_instance(
    State(fleet): State<SharedFleet>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MemberStatus>, ApiError> {
    Ok(Json(fleet.act_on_instance(&id, Action::Start).await?))
}

/// `POST /instances/{id}/stop`: SIGTERM, so it deregisters and exits.
async fn stop_instance(
    State(fleet): State<SharedFleet>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MemberStatus>, ApiError> {
    Ok(Json(fleet.act_on_instance(&id, Action::Terminate).await?))
}

/// `POST /instances/{id}/kill`: SIGKILL, so it vanishes still registered.
async fn kill_instance(
    State(fleet): State<SharedFleet>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MemberStatus>, ApiError> {
    Ok(Json(fleet.act_on_instance(&id, Action::Kill).await?))
}

/// `POST /nodes/{node}/stop`: SIGKILL every process on the node, like losing the machine.
async fn stop_node(
    State(fleet): State<SharedFleet>,
    ApiPath(node): ApiPath<String>,
) -> Result<Json<Vec<MemberStatus>>, ApiError> {
    Ok(Json(fleet.act_on_node(&node, Action::Kill).await?))
}

/// `POST /nodes/{node}/start`: starts every instance of the node that isn't running.
async fn start_node(
    State(fleet): State<SharedFleet>,
    ApiPath(node): ApiPath<String>,
) -> Result<Json<Vec<MemberStatus>>, ApiError> {
    Ok(Json(fleet.act_on_node(&node, Action::Start).await?))
}

async fn not_found() -> ApiError {
    ApiError::NotFound(
        "no such control route; GET / shows the fleet and the commands, GET /fleet lists it as JSON".into(),
    )
}

/// `GET /`: the fleet as a plain HTML table, with the commands to try.
async fn page(State(fleet): State<SharedFleet>) -> Response {
    let rows: String = fleet
        .list()
        .await
        .iter()
        .map(|m| {
            let cells = [
                m.spec.id.clone(),
                m.spec.cluster.clone(),
                m.spec.node.clone(),
                m.spec.address.to_string(),
                m.spec.service.clone(),
                m.spec.version.clone(),
                format!("{:?}", m.state).to_lowercase(),
                m.pid.map(|p| p.to_string()).unwrap_or_default(),
                m.mode.map(|mode| mode.to_string()).unwrap_or_default(),
                m.detail.clone().unwrap_or_default(),
            ];
            let cells: String = cells.iter().map(|c| format!("<td>{}</td>", escape(c))).collect();
            format!("<tr class=\"is-{:?}\">{cells}</tr>\n", m.state).to_lowercase()
        })
        .collect();
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>opsdeck demo fleet</title>
<style>
  body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2rem; }}
  table {{ border-collapse: collapse; }} td, th {{ padding: .25rem .6rem; border-bottom: 1px solid #ddd; text-align: left; }}
  tr.is-exited td, tr.is-stopped td {{ color: #a00; }} code, pre {{ background: #f4f4f4; padding: .5rem; }}
</style></head>
<body>
<h1>opsdeck demo fleet</h1>
<table><thead><tr><th>id</th><th>cluster</th><th>node</th><th>address</th><th>service</th><th>version</th>
<th>process</th><th>pid</th><th>mode</th><th>detail</th></tr></thead>
<tbody>
{rows}</tbody></table>
<h2>Commands</h2>
<pre>
curl -s -X PUT  $CONTROL/instances/ID/mode -d '{{"mode":"error"}}'   # healthy | slow | error | exit
curl -s -X POST $CONTROL/instances/ID/start | stop | kill
curl -s -X POST $CONTROL/nodes/NODE/stop                           # SIGKILL every process on the node
curl -s -X POST $CONTROL/nodes/NODE/start
curl -s $CONTROL/fleet                                             # this table as JSON
</pre>
</body></html>"#
    ))
    .into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
