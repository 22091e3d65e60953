//! The demo's control API: list the fleet, set an instance's failure mode, stop and start
//! instances and whole nodes, and deploy versions onto nodes for rolling releases (it is the
//! demo dashboard's deployer, see `releases::deployer`). Loopback only by default; it has no authentication because it can
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
    fleet::{Action, Fleet, MemberStatus, ProcessState},
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
        .route("/deployments/{service}/{version}/{node}", get(deployment).put(deploy).delete(undeploy))
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

/// A deployment as the deployer protocol answers it (see `releases::deployer`).
#[derive(Debug, serde::Serialize)]
struct Deployment {
    id: Option<String>,
    address: Option<String>,
    running: bool,
    detail: Option<String>,
}

impl From<Option<MemberStatus>> for Deployment {
    fn from(status: Option<MemberStatus>) -> Self {
        match status {
            Some(m) => Self {
                running: m.state == ProcessState::Running,
                detail: m.detail,
                id: Some(m.spec.id),
                address: Some(m.spec.address.to_string()),
            },
            None => Self { id: None, address: None, running: false, detail: Some("not deployed".into()) },
        }
    }
}

/// `PUT /deployments/{service}/{version}/{node}`: the deployer's start (rolling releases).
async fn deploy(
    State(fleet): State<SharedFleet>,
    ApiPath((service, version, node)): ApiPath<(String, String, String)>,
) -> Result<Json<Deployment>, ApiError> {
    let status = fleet.deploy(&service, &version, &node).await?;
    if status.state != ProcessState::Running {
        return Err(ApiError::Unavailable(format!(
            "{} did not start: {}",
            status.spec.id,
            status.detail.unwrap_or_default()
        )));
    }
    Ok(Json(Some(status).into()))
}

/// `DELETE /deployments/{service}/{version}/{node}`: the deployer's graceful stop.
async fn undeploy(
    State(fleet): State<SharedFleet>,
    ApiPath((service, version, node)): ApiPath<(String, String, String)>,
) -> Json<Deployment> {
    Json(fleet.undeploy(&service, &version, &node).await.into())
}

/// `GET /deployments/{service}/{version}/{node}`: whether it runs, and how it ended if not.
async fn deployment(
    State(fleet): State<SharedFleet>,
    ApiPath((service, version, node)): ApiPath<(String, String, String)>,
) -> Json<Deployment> {
    Json(fleet.deployment(&service, &version, &node).await.into())
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
curl -s -X PUT    $CONTROL/deployments/web/v3/east-1                # start web v3 on east-1 (what rolling releases do)
curl -s -X DELETE $CONTROL/deployments/web/v1/east-1                # stop web v1 there (SIGTERM)
</pre>
</body></html>"#
    ))
    .into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
