//! Benchmark of issue #5's "metric points/s through opsdeck vs direct to InfluxDB (goal ≥ 0.9×)".
//! The same line-protocol bodies are sent, with the same concurrency, once straight to InfluxDB's
//! `/write` (its limit on this machine, measured in the same run) and once through
//! `POST /api/v1/metrics` of `opsdeck serve` (release, pinned to one core, one tokio worker).
//! Through opsdeck the clock stops when the last point is *written to InfluxDB* (opsdeck's own
//! `opsdeck_metrics_points_written_total`), not when it is acknowledged; both databases are then
//! counted with InfluxQL, so a lost point fails the run. Run it through `scripts/bench metrics`.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bench::{opsdeck::Environment, procstat};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Metric points/s through opsdeck vs straight to InfluxDB")]
struct Args {
    #[arg(long, default_value = "target/release/opsdeck")]
    opsdeck: PathBuf,
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[arg(long, env = "OPSDECK_INFLUX_URL")]
    influx_url: String,
    #[arg(long, env = "OPSDECK_SITE_ROOT", default_value = "target/site")]
    site_root: PathBuf,
    /// Points sent each way.
    #[arg(long, default_value_t = 1_000_000)]
    points: usize,
    /// Points per request (opsdeck writes batches of --influx-batch-size, 5,000 by default).
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    /// Requests in flight at once, each way.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// The core opsdeck serve is pinned to.
    #[arg(long, default_value_t = 0)]
    core: u32,
    #[arg(long, default_value = ".local/bench")]
    work_dir: PathBuf,
    /// InfluxDB's process: after the direct phase, wait until it is idle again (it snapshots the
    /// million points it just took in the background), so that work isn't billed to opsdeck.
    #[arg(long)]
    influxd_pid: Option<u32>,
}

/// Through opsdeck must reach this share of the direct rate.
const GOAL_RATIO: f64 = 0.9;
/// opsdeck's default InfluxDB database; the direct run writes to its own.
const OPSDECK_DATABASE: &str = "opsdeck";
const DIRECT_DATABASE: &str = "bench_direct";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
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
    let token = env.create_token("bench-metric-ingest", "ingest").await?;
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let log = args.work_dir.join("opsdeck-metric-ingest.log");
    let mut serve = env.serve(listen, args.core, &log).await?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let influx = args.influx_url.trim_end_matches('/').to_owned();
    influxql(&http, &influx, &format!("CREATE DATABASE {DIRECT_DATABASE}")).await?;

    let bodies = Arc::new(bodies(args.points, args.batch));
    let total = args.points;

    // Direct first, then through opsdeck: the same bodies, the same concurrency.
    let direct_url = format!("{influx}/write?db={DIRECT_DATABASE}&precision=ns");
    let started = Instant::now();
    let direct_retries = send_all(&http, &direct_url, None, &bodies, args.concurrency).await?;
    let direct = started.elapsed();
    if let Some(pid) = args.influxd_pid {
        let settled = settle(pid).await?;
        println!("InfluxDB settled {:.1} s after the direct phase (under 5 % CPU for a second)", settled.as_secs_f64());
    }

    let ingest_url = format!("{}/api/v1/metrics", serve.base);
    let cpu_before = procstat::cpu_ticks(serve.pid)?;
    let waited_before = procstat::run_queue_wait(serve.pid);
    let started = Instant::now();
    let refused_full = send_all(&http, &ingest_url, Some(&token), &bodies, args.concurrency).await?;
    let acknowledged = started.elapsed();
    let written_at = loop {
        if written(&http, &serve.base).await? >= total as f64 {
            break started.elapsed();
        }
        serve.check_running()?;
        if started.elapsed() > Duration::from_secs(600) {
            bail!("opsdeck had not written every point to InfluxDB after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let cpu_ms =
        (procstat::cpu_ticks(serve.pid)? - cpu_before) as f64 * 1000.0 / procstat::clock_ticks_per_second() as f64;
    let waited = procstat::run_queue_wait(serve.pid).saturating_sub(waited_before);
    serve.stop().await;

    let direct_count = count(&http, &influx, DIRECT_DATABASE).await?;
    let opsdeck_count = count(&http, &influx, OPSDECK_DATABASE).await?;
    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    let (direct_rate, opsdeck_rate) = (rate(direct), rate(written_at));
    let ratio = opsdeck_rate / direct_rate;

    println!("\n== metric ingest: points/s through opsdeck (one core) vs straight to InfluxDB ==");
    println!("machine: {} cores, {}", procstat::processors(), procstat::cpu_model());
    println!(
        "{total} points in requests of {} ({} requests), {} in flight each way\n",
        args.batch,
        bodies.len(),
        args.concurrency
    );
    println!("{:<52}{:>14}{:>16}{:>16}", "", "time", "points/s", "points stored");
    println!(
        "{:<52}{:>14}{:>16}{:>16}",
        "direct to InfluxDB /write (the limit)",
        format!("{:.2} s", direct.as_secs_f64()),
        format!("{direct_rate:.0}"),
        direct_count
    );
    println!(
        "{:<52}{:>14}{:>16}{:>16}",
        "through opsdeck, until written to InfluxDB",
        format!("{:.2} s", written_at.as_secs_f64()),
        format!("{opsdeck_rate:.0}"),
        opsdeck_count
    );
    println!(
        "{:<52}{:>14}{:>16}",
        "  (all acknowledged by opsdeck after)",
        format!("{:.2} s", acknowledged.as_secs_f64()),
        format!("{:.0}", rate(acknowledged))
    );
    println!(
        "\nopsdeck CPU: {cpu_ms:.0} ms ({:.2} µs per point, so {:.0} points/s per core of its own); \
         it waited {:.2} s for its core (other processes on core 0); load average {:.2}",
        cpu_ms * 1000.0 / total as f64,
        total as f64 / (cpu_ms / 1000.0),
        waited.as_secs_f64(),
        procstat::load_average()
    );
    println!("503 (buffer full) retried: {refused_full}; direct retries: {direct_retries}");
    let checks = [
        (ratio >= GOAL_RATIO, format!("through opsdeck {ratio:.2}× the direct rate (goal ≥ {GOAL_RATIO}×)")),
        (opsdeck_count == total as u64, format!("every point through opsdeck stored ({opsdeck_count} of {total})")),
        (direct_count == total as u64, format!("every point sent directly stored ({direct_count} of {total})")),
    ];
    println!();
    for (ok, what) in &checks {
        println!("{} {what}", if *ok { "PASS" } else { "FAIL" });
    }
    if checks.iter().all(|(ok, _)| *ok) {
        println!("verdict: metric ingest through opsdeck keeps up with InfluxDB");
        Ok(())
    } else {
        println!("verdict: below the goal");
        std::process::exit(2);
    }
}

/// `points` points in bodies of `batch` lines: 100 hosts × 4 regions, a float and an integer
/// field, and a distinct timestamp per point so none overwrites another.
fn bodies(points: usize, batch: usize) -> Vec<String> {
    let base_ns: i64 = 1_700_000_000_000_000_000;
    (0..points)
        .collect::<Vec<_>>()
        .chunks(batch.max(1))
        .map(|chunk| {
            let mut body = String::with_capacity(chunk.len() * 80);
            for &i in chunk {
                let host = i % 100;
                let region = i % 4;
                let value = (i % 1000) as f64 / 7.0;
                body.push_str(&format!(
                    "bench_ingest,host=host-{host},region=region-{region} value={value:.3},count={i}i {}\n",
                    base_ns + i as i64
                ));
            }
            body
        })
        .collect()
}

/// Sends every body with `concurrency` requests in flight; a 503 is retried after its
/// `Retry-After` (as a well-behaved sender does), and the retries are counted.
async fn send_all(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    bodies: &Arc<Vec<String>>,
    concurrency: usize,
) -> anyhow::Result<usize> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (http, url, token, bodies, next) =
            (http.clone(), url.to_owned(), token.map(str::to_owned), bodies.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut retries = 0;
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(index) else { return Ok::<_, anyhow::Error>(retries) };
                loop {
                    let mut request = http.post(&url).header("content-type", "text/plain").body(body.clone());
                    if let Some(token) = &token {
                        request = request.bearer_auth(token);
                    }
                    let response = request.send().await.with_context(|| format!("POST {url}"))?;
                    let status = response.status();
                    if status.is_success() {
                        break;
                    }
                    if status.as_u16() != 503 {
                        bail!("POST {url}: HTTP {status}: {}", response.text().await.unwrap_or_default());
                    }
                    let wait = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                        .unwrap_or(1);
                    retries += 1;
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                }
            }
        }));
    }
    let mut retries = 0;
    for worker in workers {
        retries += worker.await??;
    }
    Ok(retries)
}

/// `opsdeck_metrics_points_written_total` from opsdeck's `/metrics`.
async fn written(http: &reqwest::Client, base: &str) -> anyhow::Result<f64> {
    let text = http.get(format!("{base}/metrics")).send().await?.text().await?;
    text.lines()
        .find_map(|line| line.strip_prefix("opsdeck_metrics_points_written_total "))
        .and_then(|v| v.trim().parse().ok())
        .context("opsdeck's /metrics has no opsdeck_metrics_points_written_total")
}

async fn influxql(http: &reqwest::Client, influx: &str, statement: &str) -> anyhow::Result<serde_json::Value> {
    let response = http.post(format!("{influx}/query")).form(&[("q", statement)]).send().await?;
    if !response.status().is_success() {
        bail!("InfluxDB refused {statement:?}: HTTP {}", response.status());
    }
    Ok(response.json().await?)
}

async fn count(http: &reqwest::Client, influx: &str, database: &str) -> anyhow::Result<u64> {
    let answer = influxql(http, influx, &format!("SELECT count(value) FROM \"{database}\"..\"bench_ingest\"")).await?;
    Ok(answer["results"][0]["series"][0]["values"][0][1].as_u64().unwrap_or(0))
}

/// Waits (at most 30 s) until `pid` used under 5 % of a core for a whole second; returns how long.
async fn settle(pid: u32) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let per_second = procstat::clock_ticks_per_second() as f64;
    while started.elapsed() < Duration::from_secs(30) {
        let before = procstat::cpu_ticks(pid)?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let used = (procstat::cpu_ticks(pid)? - before) as f64 / per_second;
        if used < 0.05 {
            break;
        }
    }
    Ok(started.elapsed())
}
