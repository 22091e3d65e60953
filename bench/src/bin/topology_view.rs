//! Benchmark of issue #4's "readable and fast at 2,000 instances": how long `opsdeck serve`
//! (release, pinned to one core) takes to build the aggregated health model
//! (`GET /api/v1/topology`) and to render the topology page on the server (`GET /topology`) for
//! 2,000 instances, how big each is on the wire (brotli, as browsers ask), and the CPU per
//! request. The instances go straight into the tables (2 clusters × 20 nodes × 10 services × 5
//! instances, one node down); the API path is measured by `health_checks`. Run it through
//! `scripts/bench topology`, which starts the stores.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bench::{opsdeck::Environment, procstat};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "The topology view and page for 2,000 instances, served by opsdeck on one core")]
struct Args {
    #[arg(long, default_value = "target/release/opsdeck")]
    opsdeck: PathBuf,
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[arg(long, env = "OPSDECK_INFLUX_URL")]
    influx_url: String,
    #[arg(long, env = "OPSDECK_SITE_ROOT", default_value = "target/site")]
    site_root: PathBuf,
    /// Requests of each kind, one after another.
    #[arg(long, default_value_t = 50)]
    requests: usize,
    /// The core opsdeck serve is pinned to.
    #[arg(long, default_value_t = 0)]
    core: u32,
    #[arg(long, default_value = ".local/bench")]
    work_dir: PathBuf,
}

/// Limits this benchmark holds the page to: a wall screen or a laptop on a slow link must get
/// the whole picture quickly.
const API_P95_LIMIT: Duration = Duration::from_millis(100);
const PAGE_P95_LIMIT: Duration = Duration::from_millis(250);
const PAGE_BROTLI_LIMIT: usize = 200 * 1024;

struct Measured {
    p50: Duration,
    p95: Duration,
    max: Duration,
    bytes: usize,
    brotli_bytes: usize,
    cpu_ms_per_request: f64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args = Args::parse();
    std::fs::create_dir_all(&args.work_dir)?;
    let env = Environment {
        binary: args.opsdeck.clone(),
        database_url: args.database_url.clone(),
        influx_url: args.influx_url.clone(),
        site_root: args.site_root.clone(),
    };
    let reader = env.create_token("bench-topology-read", "read").await?;
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let log = args.work_dir.join("opsdeck-topology.log");
    let serve = env.serve(listen, args.core, &log).await?;
    let db = sqlx::PgPool::connect(&args.database_url).await.context("cannot connect to PostgreSQL")?;
    seed(&db).await?;

    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let api = measure(&http, &format!("{}/api/v1/topology", serve.base), &reader, serve.pid, args.requests).await?;
    let page = measure(&http, &format!("{}/topology", serve.base), &reader, serve.pid, args.requests).await?;
    serve.stop().await;

    println!("\n== the topology view and page: 2,000 instances, opsdeck serve on one core ==");
    println!("machine: {} cores, {}", procstat::processors(), procstat::cpu_model());
    println!("{} requests of each, one after another\n", args.requests);
    println!("{:<44}{:>12}{:>12}{:>12}{:>14}{:>14}{:>12}", "", "p50", "p95", "max", "bytes", "brotli", "CPU/req");
    for (name, m) in [("GET /api/v1/topology (JSON)", &api), ("GET /topology (server-rendered page)", &page)] {
        println!(
            "{name:<44}{:>12}{:>12}{:>12}{:>14}{:>14}{:>12}",
            format!("{:.1} ms", ms(m.p50)),
            format!("{:.1} ms", ms(m.p95)),
            format!("{:.1} ms", ms(m.max)),
            m.bytes,
            m.brotli_bytes,
            format!("{:.1} ms", m.cpu_ms_per_request)
        );
    }
    let checks = [
        (api.p95 <= API_P95_LIMIT, format!("the view's p95 ≤ {} ms", API_P95_LIMIT.as_millis())),
        (page.p95 <= PAGE_P95_LIMIT, format!("the page's p95 ≤ {} ms", PAGE_P95_LIMIT.as_millis())),
        (page.brotli_bytes <= PAGE_BROTLI_LIMIT, format!("the page ≤ {} KB on the wire", PAGE_BROTLI_LIMIT / 1024)),
    ];
    println!();
    for (ok, what) in &checks {
        println!("{} {what}", if *ok { "PASS" } else { "FAIL" });
    }
    if checks.iter().all(|(ok, _)| *ok) {
        println!("verdict: 2,000 instances are served fast enough on one core");
        Ok(())
    } else {
        println!("verdict: over a limit");
        std::process::exit(2);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// 2 clusters × 20 nodes × 10 services × 5 instances; node region-1-node-7 down. Checked once an
/// hour, so the health checker leaves the picture alone while it is measured.
async fn seed(db: &sqlx::PgPool) -> anyhow::Result<()> {
    sqlx::query(
        r#"WITH c AS (INSERT INTO clusters (name) SELECT 'region-' || g FROM generate_series(1, 2) g RETURNING id, name),
                n AS (INSERT INTO nodes (cluster_id, name, address)
                      SELECT c.id, c.name || '-node-' || g, '127.1.' || c.id || '.' || g FROM c, generate_series(1, 20) g
                      RETURNING id, address),
                s AS (INSERT INTO services (name, check_interval_ms) SELECT 'svc-' || g, 3600000 FROM generate_series(1, 10) g
                      RETURNING id),
                v AS (INSERT INTO service_versions (service_id, label) SELECT id, 'v1' FROM s RETURNING id, service_id)
           INSERT INTO instances (id, service_id, version_id, node_id, host, port, ttl_ms, health, health_reason)
           SELECT gen_random_uuid(), v.service_id, v.id, n.id, n.address, 8000 + v.service_id * 10 + k, 3600000,
                  CASE WHEN n.address = '127.1.1.7' THEN 'unhealthy' ELSE 'healthy' END,
                  CASE WHEN n.address = '127.1.1.7' THEN 'cannot connect: Connection refused' END
           FROM n, v, generate_series(1, 5) k"#,
    )
    .execute(db)
    .await
    .context("seeding 2,000 instances")?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM instances").fetch_one(db).await?;
    if count != 2000 {
        bail!("expected 2,000 instances, found {count}: run against an empty database");
    }
    Ok(())
}

async fn measure(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    pid: u32,
    requests: usize,
) -> anyhow::Result<Measured> {
    let get = |brotli: bool| {
        let mut request = http.get(url).bearer_auth(token);
        if brotli {
            // reqwest here has no brotli decoder, so the body stays compressed: its size is the wire size.
            request = request.header("accept-encoding", "br");
        }
        request.send()
    };
    let plain = get(false).await?;
    if !plain.status().is_success() {
        bail!("{url}: HTTP {}", plain.status());
    }
    let bytes = plain.bytes().await?.len();
    let brotli_bytes = get(true).await?.bytes().await?.len();
    // Warm up, then time one request after another.
    for _ in 0..3 {
        get(true).await?.bytes().await?;
    }
    let cpu_before = procstat::cpu_ticks(pid)?;
    let mut times = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        let response = get(true).await?;
        if !response.status().is_success() {
            bail!("{url}: HTTP {}", response.status());
        }
        response.bytes().await?;
        times.push(started.elapsed());
    }
    let cpu_ticks = procstat::cpu_ticks(pid)? - cpu_before;
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    Ok(Measured {
        p50: at(0.5),
        p95: at(0.95),
        max: times[times.len() - 1],
        bytes,
        brotli_bytes,
        cpu_ms_per_request: cpu_ticks as f64 * 1000.0 / procstat::clock_ticks_per_second() as f64 / requests as f64,
    })
}
