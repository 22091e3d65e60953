//! Benchmark of issue #4: can `opsdeck serve`, pinned to one core, health-check 10,000
//! instances every 5 s, and what CPU does it use? Starts a probe target for 10,000 loopback
//! hosts, the release `opsdeck serve` under `taskset`, registers the instances through the API,
//! waits until all are healthy, then measures a steady window: probes answered, per-instance
//! probe gaps, opsdeck's CPU time and memory, PostgreSQL's and InfluxDB's CPU, and the
//! `health_probe` points InfluxDB received. Run it through `scripts/bench`, which starts the
//! stores. Progress goes to stderr (tracing); the result table to stdout. Exit status 2 when the
//! target is missed.

use std::{
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use bench::{
    opsdeck::{Environment, Spread, register_all},
    procstat,
    report::Figures,
    target::{Target, host_of},
};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "10,000 instances health-checked every 5 s by opsdeck serve on one core")]
struct Args {
    /// The opsdeck binary (build it with --release).
    #[arg(long, default_value = "target/release/opsdeck")]
    opsdeck: PathBuf,
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[arg(long, env = "OPSDECK_INFLUX_URL")]
    influx_url: String,
    /// opsdeck's InfluxDB database (its `--influx-database` default).
    #[arg(long, default_value = "opsdeck")]
    influx_database: String,
    #[arg(long, env = "OPSDECK_SITE_ROOT", default_value = "target/site")]
    site_root: PathBuf,
    /// Instances to register and check.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=63_500))]
    instances: u64,
    /// The services' check interval, set in `services.check_interval_ms`.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// The measured steady window.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Time between "all healthy" and the window, for the probes to settle.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// An instance counts as lagging when it went unprobed longer than interval + this.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    lag_slack: Duration,
    /// The core opsdeck serve is pinned to.
    #[arg(long, default_value_t = 0)]
    core: u32,
    /// Registration requests in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Where opsdeck's log goes.
    #[arg(long, default_value = ".local/bench")]
    work_dir: PathBuf,
    /// PostgreSQL's postmaster pid, to measure its CPU (postmaster + backends).
    #[arg(long)]
    postgres_pid: Option<u32>,
    /// influxd's pid, to measure its CPU.
    #[arg(long)]
    influxd_pid: Option<u32>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).init();
    match run(Args::parse()).await {
        Ok(figures) => {
            println!("{}", figures.render());
            if figures.passed() { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::from(2) }
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "benchmark failed");
            std::process::ExitCode::FAILURE
        }
    }
}

/// CPU counters sampled at the start and end of the window.
struct Sample {
    at: Instant,
    wall: SystemTime,
    probes: u64,
    opsdeck: u64,
    opsdeck_wait: Duration,
    postgres: Option<u64>,
    influxd: Option<u64>,
    bench: u64,
}

fn sample(target: &Target, opsdeck_pid: u32, args: &Args) -> anyhow::Result<Sample> {
    Ok(Sample {
        at: Instant::now(),
        wall: SystemTime::now(),
        probes: target.stats.answered(),
        opsdeck: procstat::cpu_ticks(opsdeck_pid)?,
        opsdeck_wait: procstat::run_queue_wait(opsdeck_pid),
        postgres: args.postgres_pid.map(|pid| procstat::cpu_ticks_of(&procstat::with_children(pid))),
        influxd: args.influxd_pid.map(|pid| procstat::cpu_ticks(pid).unwrap_or(0)),
        bench: procstat::cpu_ticks(std::process::id())?,
    })
}

async fn run(args: Args) -> anyhow::Result<Figures> {
    let count = usize::try_from(args.instances)?;
    std::fs::create_dir_all(&args.work_dir)?;
    let env = Environment {
        binary: args.opsdeck.clone(),
        database_url: args.database_url.clone(),
        influx_url: args.influx_url.clone(),
        site_root: args.site_root.clone(),
    };

    let target = Target::start(count).await?;
    tracing::info!(port = target.port, instances = count, "probe target listening on 0.0.0.0");

    let token = env.create_token("bench-ingest", "ingest").await?;
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let log = args.work_dir.join("opsdeck.log");
    let mut serve = env.serve(listen, args.core, &log).await?;
    tracing::info!(pid = serve.pid, %listen, core = args.core, log = %log.display(), "opsdeck serve is ready");

    let spread = Spread { clusters: 2, nodes: count.div_ceil(250).clamp(1, 40), services: 5, versions: 2 };
    let port = target.port;
    let registration =
        register_all(&serve.base, &token, count, args.concurrency, move |i| spread.registration(i, host_of(i), port))
            .await?;
    let registered_at = Instant::now();
    tracing::info!(seconds = registration.as_secs_f64(), "all instances registered");

    // The services' check interval, set as an operator would: PATCH through the catalog API.
    let operator = env.create_token("bench-operate", "operate").await?;
    let interval_ms = u64::try_from(args.interval.as_millis())?;
    let http = reqwest::Client::new();
    for service in spread.service_names() {
        let answer = http
            .patch(format!("{}/api/v1/services/{service}", serve.base))
            .bearer_auth(&operator)
            .json(&serde_json::json!({ "check_interval_ms": interval_ms }))
            .send()
            .await?;
        if !answer.status().is_success() {
            let status = answer.status();
            bail!("setting {service}'s check interval: {status}: {}", answer.text().await.unwrap_or_default());
        }
    }
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&args.database_url)
        .await
        .context("cannot connect to PostgreSQL")?;

    let healthy_query = "SELECT count(*) FILTER (WHERE health = 'healthy') FROM instances";
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        serve.check_running()?;
        let healthy: i64 = sqlx::query_scalar(healthy_query).fetch_one(&db).await?;
        if healthy as usize >= count {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {healthy} of {count} instances healthy 180 s after registration");
        }
        tracing::info!(healthy, "waiting until every instance is healthy");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let time_to_all_healthy = registered_at.elapsed();
    tracing::info!(seconds = time_to_all_healthy.as_secs_f64(), "all instances healthy; warming up");
    tokio::time::sleep(args.warmup).await;

    tracing::info!(seconds = args.window.as_secs(), "measuring");
    let start = sample(&target, serve.pid, &args)?;
    target.stats.start_window();
    tokio::time::sleep(args.window).await;
    let end = sample(&target, serve.pid, &args)?;
    let hosts = target.stats.end_window();
    let footprint = procstat::footprint(serve.pid);
    serve.check_running()?;
    let healthy_after: i64 = sqlx::query_scalar(healthy_query).fetch_one(&db).await?;

    // The checker sends its points to InfluxDB once a second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let influx = influx_summary(&args, start.wall, end.wall).await?;
    let unknown_host_probes = target.stats.unknown_host();
    target.stop().await;
    serve.stop().await;

    let ticks = procstat::clock_ticks_per_second() as f64;
    let cpu = |from: u64, to: u64| Duration::from_secs_f64(to.saturating_sub(from) as f64 / ticks);
    Ok(Figures {
        instances: count,
        interval: args.interval,
        window: end.at - start.at,
        lag_limit: args.interval + args.lag_slack,
        probes: end.probes - start.probes,
        influx_points: influx.points,
        hosts,
        probe_latency_ms: (influx.mean_latency_ms, influx.max_latency_ms),
        healthy_after: usize::try_from(healthy_after)?,
        unknown_host_probes,
        opsdeck_cpu: cpu(start.opsdeck, end.opsdeck),
        opsdeck_run_queue_wait: end.opsdeck_wait.saturating_sub(start.opsdeck_wait),
        opsdeck: footprint,
        postgres_cpu: start.postgres.zip(end.postgres).map(|(a, b)| cpu(a, b)),
        influxd_cpu: start.influxd.zip(end.influxd).map(|(a, b)| cpu(a, b)),
        bench_cpu: cpu(start.bench, end.bench),
        load_average: procstat::load_average(),
        registration,
        time_to_all_healthy,
        machine: format!("{} cores, {}", procstat::processors(), procstat::cpu_model()),
    })
}

/// What InfluxDB holds of the window.
struct InfluxSummary {
    points: u64,
    mean_latency_ms: f64,
    max_latency_ms: f64,
}

/// `health_probe` points with a time in `[from, to)`, and their latency.
async fn influx_summary(args: &Args, from: SystemTime, to: SystemTime) -> anyhow::Result<InfluxSummary> {
    let ns = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let query = format!(
        "SELECT count(ok), mean(latency_ms), max(latency_ms) FROM health_probe WHERE time >= {} AND time < {}",
        ns(from),
        ns(to)
    );
    let answer: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/query", args.influx_url.trim_end_matches('/')))
        .query(&[("db", args.influx_database.as_str()), ("q", query.as_str())])
        .send()
        .await
        .context("cannot query InfluxDB")?
        .error_for_status()?
        .json()
        .await?;
    if let Some(error) = answer.pointer("/results/0/error") {
        bail!("InfluxDB refused {query}: {error}");
    }
    // Columns: time, count, mean, max; no series when there are no points.
    let value = |column: usize| answer.pointer(&format!("/results/0/series/0/values/0/{column}")).cloned();
    Ok(InfluxSummary {
        points: value(1).and_then(|v| v.as_u64()).unwrap_or(0),
        mean_latency_ms: value(2).and_then(|v| v.as_f64()).unwrap_or(f64::NAN),
        max_latency_ms: value(3).and_then(|v| v.as_f64()).unwrap_or(f64::NAN),
    })
}
