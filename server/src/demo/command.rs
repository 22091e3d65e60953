//! `opsdeck demo` itself: the dashboard (in-process), the fleet, its router and the control API
//! together, started in that order and stopped in the reverse one.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use app::model::identity::{NewToken, Scope};

use super::{
    DemoSettings,
    fleet::{Fleet, Launch, MemberStatus, ProcessState},
    plan::{FleetPlan, MemberKind},
    router::{DemoRouter, RouterAddresses},
};
use crate::{audit::Actor, auth::RequestContext, cli::LogFormat, startup::Application};

/// `opsdeck demo`: the dashboard, the fleet and the control API, until SIGTERM or Ctrl-C. On the
/// way out the fleet stops first (each service deregisters while the dashboard still answers),
/// then the control API and the dashboard.
pub async fn run(settings: DemoSettings, log_format: LogFormat) -> anyhow::Result<()> {
    // Listen for SIGTERM/Ctrl-C from the start, so a stop during start-up also stops the fleet
    // in order instead of killing the demo with its children still registered.
    let mut stop_requested = tokio::spawn(crate::startup::shutdown_signal());
    let plan = FleetPlan::new(settings.fleet, settings.service_port_base);
    let control_listener = tokio::net::TcpListener::bind(settings.control_listen).await.with_context(|| {
        format!(
            "cannot listen on {} (--control-listen / OPSDECK_DEMO_CONTROL_LISTEN): is the port taken?",
            settings.control_listen
        )
    })?;
    let control_address = control_listener.local_addr().context("the control listener has no address")?;
    // The control API is the dashboard's deployer: rolling releases start and stop demo
    // instances through it (unless --deployer-url names another).
    let mut serve = settings.serve.clone();
    if serve.releases.deployer_url.is_none() {
        let url = format!("http://{}", reachable(control_address));
        serve.releases.deployer_url = Some(url.parse().with_context(|| format!("{url} is not a URL"))?);
    }
    let application = Application::build(serve).await?;
    let dashboard = application.local_addr();
    let db = application.state().db.clone();
    let (token_id, token) = create_token(&db).await?;
    let (stop_dashboard, dashboard_stop) = tokio::sync::oneshot::channel::<()>();
    let mut dashboard_task = tokio::spawn(application.run_until_stopped(async move {
        let _ = dashboard_stop.await;
    }));

    let dashboard_url = format!("http://{}", reachable(dashboard));
    if let Err(error) = tune_checks(&db, &dashboard_url, &plan).await {
        // Not fatal: the demo still works with the default checks, only slower to react.
        tracing::warn!(
            error = format!("{error:#}"),
            "could not set the demo's quick health checks; using the defaults"
        );
    }

    let mut services: Vec<String> =
        plan.instances.iter().filter(|i| i.kind == MemberKind::Service).map(|i| i.service.clone()).collect();
    services.sort_unstable();
    services.dedup();
    let discoverable = until_discoverable(dashboard_url.clone(), token.clone(), services);
    if let Err(error) = super::router::initial_policies(&db, &plan).await {
        tracing::warn!(error = format!("{error:#}"), "could not set the demo's initial traffic policies");
    }
    let launch = Launch {
        exe: std::env::current_exe().context("cannot find this program's own path to start the demo services")?,
        opsdeck_url: format!("http://{}", reachable(dashboard)),
        token,
        log_format,
    };
    let router_addresses =
        RouterAddresses { listen: settings.router_listen, admin: reachable(settings.router_admin_listen) };
    let router = DemoRouter::start(
        &launch.exe,
        &settings.serve,
        router_addresses,
        &launch.opsdeck_url,
        &launch.token,
        log_format,
    )?;
    let traffic_targets = if settings.traffic_targets.is_empty() {
        through_router(&plan, reachable(settings.router_listen))
    } else {
        settings.traffic_targets.iter().cloned().map(super::traffic::Target::direct).collect()
    };
    let fleet = Arc::new(Fleet::new(launch, plan)?);
    let started = fleet.start_all().await;
    router.until_ready().await;
    let stop_traffic = tokio_util::sync::CancellationToken::new();
    let traffic_rps = settings.traffic_rps;
    let traffic = tokio::spawn({
        let stop = stop_traffic.clone();
        async move {
            // Not before the services can find each other, or the first requests fail only
            // because the fleet is still starting.
            tokio::select! {
                () = stop.cancelled() => return,
                () = discoverable => {}
            }
            super::traffic::run(traffic_targets, traffic_rps, stop).await;
        }
    });
    let (stop_control, control_stop) = tokio::sync::oneshot::channel::<()>();
    let mut control_task = tokio::spawn(super::control::serve(control_listener, fleet.clone(), async move {
        let _ = control_stop.await;
    }));
    tracing::info!(dashboard = %format!("http://{dashboard}/"), control = %format!("http://{control_address}/"), instances = started.len(), "opsdeck demo is running");
    print_banner(dashboard, control_address, router_addresses, &started);

    let outcome = tokio::select! {
        _ = &mut stop_requested => Ok(()),
        ended = &mut dashboard_task => Err(flatten(ended).err().unwrap_or_else(|| anyhow::anyhow!("the dashboard stopped by itself"))),
        ended = &mut control_task => Err(flatten(ended).err().unwrap_or_else(|| anyhow::anyhow!("the control API stopped by itself"))),
    };
    tracing::info!("stopping the demo traffic and fleet (each service deregisters), then the dashboard");
    stop_traffic.cancel();
    let _ = traffic.await;
    router.stop().await;
    fleet.stop_all().await;
    let (actor, context) = (Actor::system("opsdeck demo"), RequestContext::default());
    if let Err(error) = crate::auth::tokens::revoke(&db, token_id, &actor, &context).await {
        tracing::warn!(%error, "could not revoke the demo fleet's token; it expires within a day");
    }
    let _ = stop_control.send(());
    let _ = stop_dashboard.send(());
    if !control_task.is_finished() {
        let _ = control_task.await;
    }
    if !dashboard_task.is_finished() {
        flatten(dashboard_task.await)?;
    }
    tracing::info!("opsdeck demo stopped");
    outcome
}

/// How the demo's services are checked: every 2 s, down after 2 failures, up after 1 success,
/// so a failure switched on by hand shows within about 4 s (the default, 5 s × 3, is for real
/// fleets). Set through the catalog API like an operator would, with a token made for it and
/// revoked straight after.
pub const DEMO_CHECKS: (u32, u32, u32, u32) = (2000, 1000, 2, 1);

async fn tune_checks(db: &sqlx::PgPool, dashboard_url: &str, plan: &FleetPlan) -> anyhow::Result<()> {
    let (actor, context) = (Actor::system("opsdeck demo"), RequestContext::default());
    let request =
        NewToken { name: "opsdeck demo set-up".into(), scopes: vec![Scope::Operate], expires_in_days: Some(1) };
    let created = crate::auth::tokens::create(db, &request, &actor, &context)
        .await
        .map_err(|error| anyhow::anyhow!("cannot create the set-up token: {error}"))?;
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build()?;
    let (interval, timeout, fall, rise) = DEMO_CHECKS;
    let mut services: Vec<&str> = plan.instances.iter().map(|i| i.service.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    let mut outcome = Ok(());
    for service in services {
        let settings =
            serde_json::json!({"check_interval_ms": interval, "check_timeout_ms": timeout, "fall": fall, "rise": rise});
        let mut create = settings.clone();
        create["name"] = serde_json::json!(service);
        let created_now = http
            .post(format!("{dashboard_url}/api/v1/services"))
            .bearer_auth(&created.secret)
            .json(&create)
            .send()
            .await?;
        let answer = if created_now.status() == reqwest::StatusCode::CONFLICT {
            http.patch(format!("{dashboard_url}/api/v1/services/{service}"))
                .bearer_auth(&created.secret)
                .json(&settings)
                .send()
                .await?
        } else {
            created_now
        };
        if !answer.status().is_success() {
            let status = answer.status();
            outcome = Err(anyhow::anyhow!("{service}: {status}: {}", answer.text().await.unwrap_or_default()));
        }
    }
    if let Err(error) = crate::auth::tokens::revoke(db, created.token.id, &actor, &context).await {
        tracing::warn!(%error, "could not revoke the demo set-up token; it expires within a day");
    }
    outcome
}

/// Completes when every service has a healthy instance in discovery (asked through the public
/// API, with the fleet's token), or after a minute anyway (with a warning).
async fn until_discoverable(dashboard_url: String, token: String, services: Vec<String>) {
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);
    let Ok(http) = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build() else { return };
    let healthy = |service: String| {
        let request = http.get(format!("{dashboard_url}/api/v1/discovery/{service}")).bearer_auth(&token);
        async move {
            let found: Option<app::model::topology::Discovery> = request.send().await.ok()?.json().await.ok();
            found.is_some_and(|d| !d.endpoints.is_empty()).then_some(())
        }
    };
    let all_healthy = async {
        let mut polls = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            polls.tick().await;
            let mut missing = false;
            for service in &services {
                missing = missing || healthy(service.clone()).await.is_none();
            }
            if !missing {
                return;
            }
        }
    };
    if tokio::time::timeout(PATIENCE, all_healthy).await.is_err() {
        tracing::warn!(?services, "not every demo service is healthy after a minute; starting the demo traffic anyway");
    }
}

/// Where the load generator sends: `GET /checkout` through the router with `Host: web`, one
/// target per instance of the entry service (the load it had when it went to each directly).
fn through_router(plan: &FleetPlan, router: SocketAddr) -> Vec<super::traffic::Target> {
    let Ok(url) = url::Url::parse(&format!("http://{router}{}", super::work::CHECKOUT_PATH)) else { return Vec::new() };
    let entries = plan
        .instances
        .iter()
        .filter(|i| i.kind == MemberKind::Service && i.service == super::plan::ENTRY_SERVICE)
        .count();
    let target = super::traffic::Target { url, host: Some(super::plan::ENTRY_SERVICE.to_owned()) };
    vec![target; entries]
}

/// The token the fleet uses: *ingest* to register, heartbeat and send logs and metrics, *read*
/// to find each other through discovery; expiring by itself, revoked when the demo stops.
async fn create_token(db: &sqlx::PgPool) -> anyhow::Result<(i64, String)> {
    let request = NewToken {
        name: "opsdeck demo fleet".into(),
        scopes: vec![Scope::Ingest, Scope::Read],
        expires_in_days: Some(1),
    };
    let created = crate::auth::tokens::create(db, &request, &Actor::system("opsdeck demo"), &RequestContext::default())
        .await
        .map_err(|error| anyhow::anyhow!("cannot create the demo fleet's ingest token: {error}"))?;
    Ok((created.token.id, created.secret))
}

fn flatten(joined: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    joined.context("a demo task panicked")?
}

/// An address a client on this machine can connect to (a wildcard listen address isn't one).
fn reachable(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => SocketAddr::from(([127, 0, 0, 1], address.port())),
        ip if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, address.port())),
        _ => address,
    }
}

/// Where everything is and what to try, for the person who started the demo.
fn print_banner(dashboard: SocketAddr, control: SocketAddr, router: RouterAddresses, started: &[MemberStatus]) {
    let dashboard = reachable(dashboard);
    let control = reachable(control);
    let (router_at, router_admin) = (reachable(router.listen), router.admin);
    let example = started.first().map(|s| s.spec.id.as_str()).unwrap_or("web-v1@east-1");
    let node = started.first().map(|s| s.spec.node.as_str()).unwrap_or("east-1");
    let running = started.iter().filter(|s| s.state == ProcessState::Running).count();
    let entry = started
        .iter()
        .find(|s| s.spec.service == super::plan::ENTRY_SERVICE)
        .map(|s| s.spec.address.to_string())
        .unwrap_or_else(|| "127.0.1.1:8100".into());
    println!(
        "\nopsdeck demo: {running} of {} demo instances started\n\
         \n  dashboard     http://{dashboard}/\n  control API   http://{control}/   (the fleet as a table)\
         \n  router        http://{router_at}/   (Host = service; admin http://{router_admin}/status)\n\
         \nTry:\n\
         \n  curl -s http://{control}/fleet                                      # the fleet, as JSON\
         \n  curl -s -X PUT http://{control}/instances/{example}/mode -d '{{\"mode\":\"error\"}}'   # healthy | slow | error | exit\
         \n  curl -s -X POST http://{control}/nodes/{node}/stop                      # SIGKILL every process on the node\
         \n  curl -s -X POST http://{control}/nodes/{node}/start                     # start them again\
         \n  curl -s -X POST http://{control}/instances/{example}/start              # start one stopped instance\
         \n  curl -s -X POST http://{control}/instances/{example}/stop               # SIGTERM: it deregisters and exits\
         \n  curl -si http://{entry}/checkout                                   # one request through the chain; x-trace-id names its trace\
         \n  curl -si -H 'Host: web' http://{router_at}/checkout               # the same through the router (web: 100 % v1, v2 at 0 %)\
         \n  curl -s -X PUT http://{control}/instances/web-v2@east-3/mode -d '{{\"mode\":\"faulty\"}}'   # make v2 fail half its requests, then start a canary of web v2\
         \n  (its log lines: GET http://{dashboard}/api/v1/logs?trace_id=… with a read token)\
         \n\nCtrl-C stops everything.\n",
        started.len()
    );
}
