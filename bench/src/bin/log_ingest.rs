//! Benchmark of issue #5's log ingest: lines per second through `POST /api/v1/logs` (opsdeck
//! serve in release, pinned to one core with one tokio worker) beside the limit measured in the
//! same run — a raw `COPY` of the same lines, in the same batches and concurrency, into the same
//! table straight from this program. Goals: opsdeck ≥ 0.7 × raw COPY and ≥ 50,000 lines/s, and
//! zero lost (rows are counted after each phase). Run it through `scripts/bench logs`.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bench::{opsdeck::Environment, procstat};
use clap::Parser;
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "Log lines/s through opsdeck vs a raw COPY of the same lines")]
struct Args {
    #[arg(long, default_value = "target/release/opsdeck")]
    opsdeck: PathBuf,
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[arg(long, env = "OPSDECK_INFLUX_URL")]
    influx_url: String,
    #[arg(long, env = "OPSDECK_SITE_ROOT", default_value = "target/site")]
    site_root: PathBuf,
    /// Lines sent in each phase.
    #[arg(long, default_value_t = 500_000)]
    lines: usize,
    /// Lines per batch (one request, or one COPY).
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    /// Batches in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// The core opsdeck serve is pinned to.
    #[arg(long, default_value_t = 0)]
    core: u32,
    #[arg(long, default_value = ".local/bench")]
    work_dir: PathBuf,
}

const RATIO_GOAL: f64 = 0.7;
const RATE_GOAL: f64 = 50_000.0;

/// One batch in both shapes: the NDJSON body opsdeck gets and the COPY text of the same rows.
struct Batch {
    ndjson: String,
    copy_text: String,
}

#[tokio::main]
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
    let token = env.create_token("bench-logs-ingest", "ingest").await?;
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let log = args.work_dir.join("opsdeck-logs.log");
    // Started first: its partition worker creates today's partition, which the raw COPY needs.
    let mut serve = env.serve(listen, args.core, &log).await?;
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(u32::try_from(args.concurrency).unwrap_or(8) + 1)
        .connect(&args.database_url)
        .await
        .context("cannot connect to PostgreSQL")?;
    let batches = Arc::new(make_batches(args.lines, args.batch));
    let bytes: usize = batches.iter().map(|b| b.ndjson.len()).sum();

    sqlx::query("TRUNCATE log_lines").execute(&db).await?;
    let raw = run_batches(&batches, args.concurrency, {
        let db = db.clone();
        move |batches: Arc<Vec<Batch>>, index: usize| {
            let db = db.clone();
            async move {
                let mut conn = db.acquire().await?;
                let mut copy = conn
                    .copy_in_raw(
                        "COPY log_lines (at, level, message, cluster, node, service, instance, component, trace_id, fields) FROM STDIN",
                    )
                    .await?;
                copy.send(batches[index].copy_text.as_bytes()).await?;
                copy.finish().await.with_context(|| format!("raw COPY of batch {index}"))?;
                anyhow::Ok(())
            }
        }
    })
    .await?;
    let raw_rows = count(&db).await?;

    sqlx::query("TRUNCATE log_lines").execute(&db).await?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let url = format!("{}/api/v1/logs", serve.base);
    let cpu_before = procstat::cpu_ticks(serve.pid)?;
    let through = run_batches(&batches, args.concurrency, move |batches: Arc<Vec<Batch>>, index: usize| {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        async move {
            let response = http
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/x-ndjson")
                .body(batches[index].ndjson.clone())
                .send()
                .await
                .with_context(|| format!("sending batch {index}"))?;
            let status = response.status();
            if !status.is_success() {
                bail!("batch {index}: HTTP {status}: {}", response.text().await.unwrap_or_default());
            }
            anyhow::Ok(())
        }
    })
    .await?;
    let cpu = procstat::cpu_ticks(serve.pid)? - cpu_before;
    let opsdeck_rows = count(&db).await?;
    serve.check_running()?;
    serve.stop().await;

    let rate = |elapsed: Duration| args.lines as f64 / elapsed.as_secs_f64();
    let (raw_rate, opsdeck_rate) = (rate(raw), rate(through));
    let ratio = opsdeck_rate / raw_rate;
    let cpu_s = cpu as f64 / procstat::clock_ticks_per_second() as f64;
    println!("\n== log ingest: {} lines, batches of {}, {} in flight ==", args.lines, args.batch, args.concurrency);
    println!(
        "machine: {} cores, {}, load {:.2}",
        procstat::processors(),
        procstat::cpu_model(),
        procstat::load_average()
    );
    println!("NDJSON: {:.1} MB, {:.0} bytes a line\n", bytes as f64 / 1e6, bytes as f64 / args.lines as f64);
    println!("{:<40}{:>12}{:>14}{:>12}", "", "time", "lines/s", "rows");
    println!("{:<40}{:>10.2} s{:>14.0}{:>12}", "raw COPY (the limit)", raw.as_secs_f64(), raw_rate, raw_rows);
    println!(
        "{:<40}{:>10.2} s{:>14.0}{:>12}",
        "POST /api/v1/logs (opsdeck, 1 core)",
        through.as_secs_f64(),
        opsdeck_rate,
        opsdeck_rows
    );
    println!("opsdeck CPU: {cpu_s:.2} s ({:.0} % of its core)\n", 100.0 * cpu_s / through.as_secs_f64());
    let expected = i64::try_from(args.lines)?;
    let verdicts = [
        (format!("opsdeck / raw COPY = {ratio:.2} (goal ≥ {RATIO_GOAL})"), ratio >= RATIO_GOAL),
        (format!("opsdeck {opsdeck_rate:.0} lines/s (goal ≥ {RATE_GOAL:.0})"), opsdeck_rate >= RATE_GOAL),
        (
            format!("zero lost: {opsdeck_rows} of {expected} rows stored"),
            opsdeck_rows == expected && raw_rows == expected,
        ),
    ];
    for (what, ok) in &verdicts {
        println!("{} {what}", if *ok { "PASS" } else { "FAIL" });
    }
    if verdicts.iter().all(|(_, ok)| *ok) {
        println!("verdict: every goal met");
        Ok(())
    } else {
        println!("verdict: a goal missed");
        std::process::exit(2);
    }
}

async fn count(db: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM log_lines").fetch_one(db).await?)
}

/// Runs `send` over every batch with `concurrency` in flight; returns the wall time.
async fn run_batches<F, Fut>(batches: &Arc<Vec<Batch>>, concurrency: usize, send: F) -> anyhow::Result<Duration>
where
    F: Fn(Arc<Vec<Batch>>, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (batches, next, send) = (batches.clone(), next.clone(), send.clone());
        workers.spawn(async move {
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if index >= batches.len() {
                    return anyhow::Ok(());
                }
                send(batches.clone(), index).await?;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

/// Realistic lines (a request log with a trace id and two free fields), times within the last
/// minute, in both encodings.
fn make_batches(lines: usize, per_batch: usize) -> Vec<Batch> {
    let now = chrono_now_micros();
    let levels = ["debug", "info", "info", "info", "warning", "error"];
    (0..lines.div_ceil(per_batch))
        .map(|b| {
            let mut batch = Batch { ndjson: String::new(), copy_text: String::new() };
            for i in b * per_batch..((b + 1) * per_batch).min(lines) {
                let micros = now - (i as i64 % 60_000_000);
                let time = rfc3339(micros);
                let level = levels[i % levels.len()];
                let message = format!("GET /api/orders/{} answered 200 in {} ms", i % 9973, i % 250);
                let (cluster, node, service) = (format!("c{}", i % 2), format!("n{}", i % 6), format!("svc-{}", i % 10));
                let instance = format!("{service}-{}", i % 3);
                let trace = format!("{:032x}", i * 2_654_435_761 % (1 << 61));
                let fields = json!({"status": 200, "path": "/api/orders"});
                let line = json!({"time": time, "level": level, "message": message, "cluster": cluster, "node": node,
                    "service": service, "instance": instance, "component": "http", "trace_id": trace, "fields": fields});
                batch.ndjson.push_str(&line.to_string());
                batch.ndjson.push('\n');
                let rank = levels.iter().position(|l| *l == level).map_or(1, |p| [0, 1, 1, 1, 2, 3][p]);
                // No tab, newline or backslash in these values, so COPY text needs no escapes.
                batch.copy_text.push_str(&format!(
                    "{time}\t{rank}\t{message}\t{cluster}\t{node}\t{service}\t{instance}\thttp\t{trace}\t{fields}\n"
                ));
            }
            batch
        })
        .collect()
}

fn chrono_now_micros() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
}

/// RFC 3339 in UTC from microseconds since the epoch, without a date crate.
fn rfc3339(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (second_of_day / 3600, second_of_day / 60 % 60, second_of_day % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{fraction:06}Z")
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}
