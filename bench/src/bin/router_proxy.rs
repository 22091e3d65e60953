//! Benchmark of issue #6's data plane, measured side by side in one run (`scripts/bench router`):
//!
//! 1. **Throughput**: the same closed-loop load (hyper client, N connections) straight to an
//!    upstream, then through nginx, HAProxy and `opsdeck router`, each proxy pinned to the same
//!    core with one worker: requests/s, p50/p99, added p99 over direct, the proxy's CPU. Goal:
//!    the router ≥ 1.0× nginx's requests/s.
//! 2. **Policy push**: a button press — `PUT /api/v1/services/{service}/traffic` with the
//!    revision last seen, through release control's service layer — → the new revision in effect
//!    on every router (two run), p50/p99/max over many presses. Goal: p99 ≤ 100 ms.
//! 3. **Instance killed** (SIGKILL) under load through a router → out of the router's rotation,
//!    and how many client requests failed. Goal: ≤ 1 s.
//!
//! `router_proxy upstream --port P` is the upstream mode the benchmark starts itself.

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bench::{
    loadgen::{self, LoadResult},
    opsdeck::Environment,
    procstat, proxies,
};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "opsdeck router vs HAProxy vs nginx; policy push and instance-kill reaction")]
struct Args {
    #[arg(long, default_value = "target/release/opsdeck")]
    opsdeck: PathBuf,
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[arg(long, env = "OPSDECK_INFLUX_URL")]
    influx_url: String,
    #[arg(long, env = "OPSDECK_SITE_ROOT", default_value = "target/site")]
    site_root: PathBuf,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured time per target.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warm_up: Duration,
    /// Policy writes timed (200: the p99 is not just the worst of a few).
    #[arg(long, default_value_t = 200)]
    writes: usize,
    /// Instances killed, one at a time.
    #[arg(long, default_value_t = 3)]
    kills: usize,
    /// The core every proxy is pinned to (one at a time under load).
    #[arg(long, default_value = "0")]
    proxy_core: String,
    /// The core(s) of upstreams and opsdeck serve.
    #[arg(long, default_value = "1")]
    other_cores: String,
    #[arg(long, default_value = ".local/bench")]
    work_dir: PathBuf,
    /// Record the router's CPU profile during its throughput run (`perf record`, into the work dir).
    #[arg(long)]
    perf: bool,
}

const SERVICE: &str = "bench";
const POLICY_P99_GOAL: Duration = Duration::from_millis(100);
const KILL_GOAL: Duration = Duration::from_secs(1);

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some("upstream") {
        let port = raw.get(3).context("upstream --port P")?.parse()?;
        return serve_upstream(port).await;
    }
    let args = Args::parse();
    match run(&args).await {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(2),
        Err(error) => Err(error),
    }
}

/// The upstream: a fixed small answer on every path.
async fn serve_upstream(port: u16) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let app = axum::Router::new().fallback(|| async { "ok from the bench upstream\n" });
    axum::serve(listener, app).await?;
    Ok(())
}

struct Stage {
    http: reqwest::Client,
    base: String,
    token: String,
    /// For the policy writes (operate scope), like an operator's session.
    operate_token: String,
    db: sqlx::PgPool,
}

impl Stage {
    async fn register(&self, version: &str, port: u16) -> anyhow::Result<String> {
        let body = json!({ "service": SERVICE, "version": version, "cluster": "bench", "node": format!("bench-{port}"),
                           "host": "127.0.0.1", "port": port, "ttl_seconds": 3600 });
        let response = self
            .http
            .post(format!("{}/api/v1/instances", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        if response.status() != 201 {
            bail!("registration answered {}: {}", response.status(), response.text().await?);
        }
        let answer: Value = response.json().await?;
        sqlx::query(
            "UPDATE services SET check_interval_ms = 500, check_timeout_ms = 1000, fall = 2, rise = 1 WHERE name = $1",
        )
        .bind(SERVICE)
        .execute(&self.db)
        .await?;
        Ok(answer["instance_id"].as_str().context("no instance id")?.to_owned())
    }

    async fn status(&self, admin: SocketAddr) -> Option<Value> {
        let status: Value = self.http.get(format!("http://{admin}/status")).send().await.ok()?.json().await.ok()?;
        status["services"].as_array()?.iter().find(|s| s["service"] == SERVICE).cloned()
    }

    async fn in_rotation(&self, admin: SocketAddr, instance: &str) -> Option<bool> {
        let status = self.status(admin).await?;
        let upstreams = status["upstreams"].as_array()?;
        Some(upstreams.iter().any(|u| u["id"] == instance && u["in_rotation"] == true))
    }

    async fn wait_in_rotation(&self, admin: SocketAddr, instance: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.in_rotation(admin, instance).await != Some(true) {
            if Instant::now() > deadline {
                bail!("instance {instance} never entered the rotation of the router at {admin}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Sets the weights the way an operator's button does — `PUT /api/v1/services/{service}/traffic`
    /// with the revision last seen (release control's one service layer: revision check, policy
    /// write, audit row, events; the trigger NOTIFYs the routers) — and returns the new revision.
    async fn write_policy(&self, weights: Value) -> anyhow::Result<i64> {
        let expected = self.current_revision().await?;
        self.press(expected, weights).await
    }

    /// The policy revision an operator's screen would show.
    async fn current_revision(&self) -> anyhow::Result<i64> {
        let url = format!("{}/api/v1/services/{SERVICE}/traffic", self.base);
        let current: Value = self.http.get(&url).bearer_auth(&self.operate_token).send().await?.json().await?;
        current["revision"].as_i64().context("no revision in GET …/traffic")
    }

    /// The button press itself: the PUT with the revision seen.
    async fn press(&self, expected: i64, weights: Value) -> anyhow::Result<i64> {
        let url = format!("{}/api/v1/services/{SERVICE}/traffic", self.base);
        let response = self
            .http
            .put(&url)
            .bearer_auth(&self.operate_token)
            .json(&json!({ "expected_revision": expected, "weights": weights, "reason": "benchmark" }))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("PUT …/traffic answered {}: {}", response.status(), response.text().await?);
        }
        let policy: Value = response.json().await?;
        policy["revision"].as_i64().context("no revision in the PUT answer")
    }
}

async fn measure(
    name: &str,
    url: &str,
    host: Option<&str>,
    pid: Option<u32>,
    args: &Args,
) -> anyhow::Result<(LoadResult, f64)> {
    let ticks_before = pid.map(procstat::cpu_ticks).transpose()?.unwrap_or(0);
    let result = loadgen::run(url, host, args.connections, args.warm_up, args.duration).await?;
    let ticks = pid.map(procstat::cpu_ticks).transpose()?.unwrap_or(0) - ticks_before;
    let busy = ticks as f64 / procstat::clock_ticks_per_second() as f64 / (args.warm_up + args.duration).as_secs_f64();
    eprintln!("  {name}: {:.0} req/s, p99 {:?}, {} errors", result.per_second(), result.quantile(0.99), result.errors);
    Ok((result, busy * 100.0))
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted.get(((sorted.len().max(1) - 1) as f64 * q).round() as usize).copied().unwrap_or_default()
}

async fn run(args: &Args) -> anyhow::Result<bool> {
    std::fs::create_dir_all(&args.work_dir)?;
    let work = args.work_dir.canonicalize()?;
    let env = Environment {
        binary: args.opsdeck.clone(),
        database_url: args.database_url.clone(),
        influx_url: args.influx_url.clone(),
        site_root: args.site_root.clone(),
    };
    let serve_core: u32 = args.other_cores.split(['-', ',']).next().unwrap_or("1").parse().unwrap_or(1);
    let serve = env.serve(free_addr()?, serve_core, &work.join("opsdeck-router-serve.log")).await?;
    let stage = Stage {
        http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?,
        base: serve.base.clone(),
        token: env.create_token("bench-router", "ingest").await?,
        operate_token: env.create_token("bench-router-operate", "operate").await?,
        db: sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&args.database_url).await?,
    };

    eprintln!("starting two upstreams, two routers, nginx and HAProxy");
    let ports = [free_addr()?.port(), free_addr()?.port()];
    let mut upstreams = Vec::new();
    for port in ports {
        upstreams.push(proxies::upstream(port, &args.other_cores, &work)?);
        proxies::wait_answering(&format!("http://127.0.0.1:{port}/"), false, "an upstream").await?;
    }
    let ids = [stage.register("v1", ports[0]).await?, stage.register("v2", ports[1]).await?];
    let (listen, admin) = ([free_addr()?, free_addr()?], [free_addr()?, free_addr()?]);
    let mut routers = Vec::new();
    for i in 0..2 {
        let log = work.join(format!("opsdeck-router-{i}.log"));
        routers.push(proxies::router(
            &args.opsdeck,
            &args.database_url,
            &args.influx_url,
            listen[i],
            admin[i],
            &args.proxy_core,
            &log,
        )?);
        proxies::wait_answering(&format!("http://{}/readyz", admin[i]), false, "opsdeck router").await?;
        for id in &ids {
            stage.wait_in_rotation(admin[i], id).await?;
        }
    }
    let (nginx_at, haproxy_at) = (free_addr()?, free_addr()?);
    let nginx = proxies::nginx(nginx_at, &ports, &args.proxy_core, &work)?;
    let haproxy = proxies::haproxy(haproxy_at, &ports, &args.proxy_core, &work)?;
    proxies::wait_answering(&format!("http://{nginx_at}/"), false, "nginx").await?;
    proxies::wait_answering(&format!("http://{haproxy_at}/"), false, "HAProxy").await?;

    eprintln!(
        "throughput: {} connections, {:?} each (after {:?} warm-up)",
        args.connections, args.duration, args.warm_up
    );
    let direct = measure("direct", &format!("http://127.0.0.1:{}/", ports[0]), None, None, args).await?;
    let via_nginx =
        measure("nginx", &format!("http://{nginx_at}/"), None, Some(nginx_worker(nginx.pid())), args).await?;
    let via_haproxy = measure("haproxy", &format!("http://{haproxy_at}/"), None, Some(haproxy.pid()), args).await?;
    let perf = if args.perf {
        let mut command = tokio::process::Command::new("perf");
        command.args(["record", "-g", "-p", &routers[0].pid().to_string(), "-o"]).arg(work.join("router.perf.data"));
        Some(command.kill_on_drop(true).spawn().context("perf record")?)
    } else {
        None
    };
    let via_router =
        measure("router", &format!("http://{}/", listen[0]), Some(SERVICE), Some(routers[0].pid()), args).await?;

    if let Some(mut perf) = perf {
        let _ = std::process::Command::new("kill").args(["-INT", &perf.id().unwrap_or(0).to_string()]).status();
        let _ = perf.wait().await;
    }
    eprintln!("policy push: {} writes, two routers", args.writes);
    // The whole press (until both routers serve it), and the PUT's own answer within it.
    let (mut push, mut answered) = (Vec::new(), Vec::new());
    for i in 0..args.writes {
        let weights = if i % 2 == 0 {
            json!([{"version": "v2", "percent": 100}, {"version": "v1", "percent": 0}])
        } else {
            json!([{"version": "v1", "percent": 100}, {"version": "v2", "percent": 0}])
        };
        let expected = stage.current_revision().await?;
        let pressed = Instant::now();
        let revision = stage.press(expected, weights).await?;
        answered.push(pressed.elapsed());
        for admin in admin {
            while stage.status(admin).await.and_then(|s| s["revision"].as_i64()).unwrap_or(0) < revision {
                if pressed.elapsed() > Duration::from_secs(10) {
                    bail!("router at {admin} did not apply revision {revision} within 10 s");
                }
            }
        }
        push.push(pressed.elapsed());
    }
    push.sort();
    answered.sort();
    stage.write_policy(json!([{"version": "v1", "percent": 50}, {"version": "v2", "percent": 50}])).await?;

    eprintln!("instance killed under load: {} times", args.kills);
    let mut kills = Vec::new();
    for _ in 0..args.kills {
        let port = free_addr()?.port();
        let victim = proxies::upstream(port, &args.other_cores, &work)?;
        proxies::wait_answering(&format!("http://127.0.0.1:{port}/"), false, "an upstream").await?;
        let id = stage.register("v1", port).await?;
        stage.wait_in_rotation(admin[0], &id).await?;
        let load = loadgen::Background::start(&format!("http://{}/", listen[0]), Some(SERVICE), 16)?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        victim.kill().await;
        let killed = Instant::now();
        while stage.in_rotation(admin[0], &id).await != Some(false) {
            if killed.elapsed() > Duration::from_secs(30) {
                bail!("the killed instance stayed in rotation for 30 s");
            }
        }
        let out = killed.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (ok, failed) = load.finish().await;
        kills.push((out, ok, failed));
    }

    let rows = [
        ("direct to one upstream", &direct),
        ("nginx 1.22", &via_nginx),
        ("HAProxy 2.6", &via_haproxy),
        ("opsdeck router", &via_router),
    ];
    let direct_p99 = direct.0.quantile(0.99);
    println!(
        "| target | req/s | p50 | p99 | added p99 vs direct | proxy CPU | errors |\n|---|---|---|---|---|---|---|"
    );
    for (name, (result, cpu)) in rows {
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} | {} | {} |",
            result.per_second(),
            result.quantile(0.5).as_secs_f64() * 1000.0,
            result.quantile(0.99).as_secs_f64() * 1000.0,
            if name.starts_with("direct") {
                "—".to_owned()
            } else {
                format!("{:.2} ms", (result.quantile(0.99).as_secs_f64() - direct_p99.as_secs_f64()) * 1000.0)
            },
            if name.starts_with("direct") { "—".to_owned() } else { format!("{cpu:.0} %") },
            result.errors,
        );
    }
    let ratio = via_router.0.per_second() / via_nginx.0.per_second().max(1e-9);
    let (p50, p99, max) = (quantile(&push, 0.5), quantile(&push, 0.99), push.last().copied().unwrap_or_default());
    let worst_kill = kills.iter().map(|k| k.0).max().unwrap_or_default();
    let failed: u64 = kills.iter().map(|k| k.2).sum();
    let served: u64 = kills.iter().map(|k| k.1).sum();
    println!();
    println!(
        "button press (PUT …/traffic) → in effect on both routers ({} writes): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        push.len(),
        ms(p50),
        ms(p99),
        ms(max)
    );
    println!(
        "  of which the PUT's own answer (auth, one transaction, commit): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(quantile(&answered, 0.5)),
        ms(quantile(&answered, 0.99)),
        ms(answered.last().copied().unwrap_or_default())
    );
    for (i, (out, ok, failed)) in kills.iter().enumerate() {
        println!(
            "kill {}: out of rotation after {:.1} ms; load through the router: {ok} ok, {failed} failed",
            i + 1,
            ms(*out)
        );
    }
    let verdicts = [
        (format!("router req/s ≥ 1.0× nginx: {ratio:.2}×"), ratio >= 1.0),
        (format!("policy push p99 ≤ 100 ms: {:.1} ms", ms(p99)), p99 <= POLICY_P99_GOAL),
        (
            format!(
                "instance killed → out of rotation ≤ 1 s: worst {:.1} ms ({failed} of {} requests failed)",
                ms(worst_kill),
                served + failed
            ),
            worst_kill <= KILL_GOAL,
        ),
    ];
    println!();
    for (line, ok) in &verdicts {
        println!("- {} {line}", if *ok { "PASS" } else { "MISS" });
    }
    println!("\nmachine: {} cores, {}", procstat::processors(), procstat::cpu_model());
    for child in [nginx, haproxy].into_iter().chain(routers).chain(upstreams) {
        child.kill().await;
    }
    serve.stop().await;
    Ok(verdicts.iter().all(|(_, ok)| *ok))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// nginx's master forks the worker that serves; its CPU is what counts.
fn nginx_worker(master: u32) -> u32 {
    procstat::with_children(master).into_iter().find(|pid| *pid != master).unwrap_or(master)
}
