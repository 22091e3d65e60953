//! Benchmark of issue #5's live tail: 500 concurrent viewers (SSE clients of
//! `GET /api/v1/logs/tail`, spread over several distinct filters that all match) on one
//! `opsdeck serve` (release, pinned to one core with one tokio worker), while lines are
//! ingested at a steady rate through `POST /api/v1/logs`. Each line carries its batch number;
//! a viewer's latency for a line is from the moment its ingest was acknowledged to the moment
//! the viewer parsed it (and, for reference, from the moment the batch was sent). Goal: p99 ≤
//! 250 ms, and every line either received or reported as missed (none lost silently). Run it
//! through `scripts/bench tail`.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bench::{opsdeck::Environment, procstat};
use clap::Parser;
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "Live-tail latency: ingest acknowledged → line received by each of N SSE viewers")]
struct Args {
    #[arg(long, default_value = "target/release/opsdeck")]
    opsdeck: PathBuf,
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[arg(long, env = "OPSDECK_INFLUX_URL")]
    influx_url: String,
    #[arg(long, env = "OPSDECK_SITE_ROOT", default_value = "target/site")]
    site_root: PathBuf,
    /// Concurrent live-tail viewers.
    #[arg(long, default_value_t = 500)]
    viewers: usize,
    /// Distinct filters the viewers are spread over (each matches every line).
    #[arg(long, default_value_t = 10)]
    filters: usize,
    /// Lines ingested per second.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Batches per second (the lines of a second are split evenly).
    #[arg(long, default_value_t = 10)]
    batches_per_second: u32,
    /// How long lines are ingested.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 0)]
    core: u32,
    #[arg(long, default_value = ".local/bench")]
    work_dir: PathBuf,
}

const P99_GOAL: Duration = Duration::from_millis(250);

/// Filters that all match the benchmark's lines, so every viewer should get every line.
fn filter(index: usize) -> Vec<(&'static str, String)> {
    let variants: [&[(&str, &str)]; 10] = [
        &[],
        &[("level", "debug")],
        &[("level", "info")],
        &[("service", "bench")],
        &[("cluster", "bench-cluster")],
        &[("node", "bench-node")],
        &[("q", "tail")],
        &[("service", "bench"), ("level", "info")],
        &[("q", "bench tail")],
        &[("instance", "bench-1")],
    ];
    variants[index % variants.len()].iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// When each batch was sent and acknowledged (µs since the run began; 0 = not yet).
struct Clock {
    began: Instant,
    sent: Vec<AtomicU64>,
    acknowledged: Vec<AtomicU64>,
}

impl Clock {
    fn now(&self) -> u64 {
        u64::try_from(self.began.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// What one viewer saw.
#[derive(Default)]
struct Seen {
    from_ack_us: Vec<u64>,
    from_send_us: Vec<u64>,
    missed: u64,
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
    let ingest_token = env.create_token("bench-tail-ingest", "ingest").await?;
    let read_token = env.create_token("bench-tail-read", "read").await?;
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let log = args.work_dir.join("opsdeck-tail.log");
    let mut serve = env.serve(listen, args.core, &log).await?;
    let base = serve.base.clone();

    let per_batch = (args.rate / args.batches_per_second).max(1) as usize;
    let batches = (args.duration.as_secs_f64() * f64::from(args.batches_per_second)).ceil() as usize;
    let clock = Arc::new(Clock {
        began: Instant::now(),
        sent: (0..batches).map(|_| AtomicU64::new(0)).collect(),
        acknowledged: (0..batches).map(|_| AtomicU64::new(0)).collect(),
    });
    let expected_per_viewer = (batches * per_batch) as u64;

    // Viewers: connect all, wait for each one's first heartbeat.
    let client = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build()?;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(args.viewers);
    let stop = stop_signal::Stop::default();
    let mut viewers = tokio::task::JoinSet::new();
    for index in 0..args.viewers {
        let url = reqwest::Url::parse_with_params(&format!("{base}/api/v1/logs/tail"), filter(index % args.filters))?;
        let (client, token, clock, ready, stop) =
            (client.clone(), read_token.clone(), clock.clone(), ready_tx.clone(), stop.clone());
        viewers.spawn(async move { view(client, url, token, clock, ready, stop, expected_per_viewer).await });
    }
    for _ in 0..args.viewers {
        tokio::time::timeout(Duration::from_secs(60), ready_rx.recv())
            .await
            .context("not every viewer connected within 60 s")?
            .context("a viewer failed to connect")?;
    }
    let cpu_before = procstat::cpu_ticks(serve.pid)?;

    // Ingest: one batch every 1/batches_per_second, each acknowledged before the next.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / args.batches_per_second);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut slowest_ingest = Duration::ZERO;
    for batch in 0..batches {
        ticker.tick().await;
        let body: String = (0..per_batch)
            .map(|n| {
                let line = json!({"time": chrono_now(), "level": "info", "message": format!("bench tail {batch} {n}"),
                    "cluster": "bench-cluster", "node": "bench-node", "service": "bench", "instance": "bench-1", "component": "bench"});
                format!("{line}\n")
            })
            .collect();
        clock.sent[batch].store(clock.now(), Ordering::SeqCst);
        let sent = Instant::now();
        let response = http
            .post(format!("{base}/api/v1/logs"))
            .bearer_auth(&ingest_token)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .with_context(|| format!("sending batch {batch}"))?;
        clock.acknowledged[batch].store(clock.now().max(1), Ordering::SeqCst);
        slowest_ingest = slowest_ingest.max(sent.elapsed());
        if !response.status().is_success() {
            bail!("batch {batch}: HTTP {}: {}", response.status(), response.text().await.unwrap_or_default());
        }
    }
    let ingest_time = started.elapsed();
    // Stragglers: every viewer stops once it has everything, or 10 s after the last batch.
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    let mut seen = Vec::with_capacity(args.viewers);
    let mut stopped = false;
    loop {
        tokio::select! {
            () = &mut deadline, if !stopped => {
                stop.stop();
                stopped = true;
            }
            done = viewers.join_next() => match done {
                Some(result) => seen.push(result??),
                None => break,
            },
        }
    }
    let cpu = procstat::cpu_ticks(serve.pid)? - cpu_before;
    serve.check_running()?;
    serve.stop().await;

    let mut from_ack: Vec<u64> = seen.iter().flat_map(|s| s.from_ack_us.iter().copied()).collect();
    let mut from_send: Vec<u64> = seen.iter().flat_map(|s| s.from_send_us.iter().copied()).collect();
    from_ack.sort_unstable();
    from_send.sort_unstable();
    let received = from_ack.len() as u64;
    let missed: u64 = seen.iter().map(|s| s.missed).sum();
    let expected = expected_per_viewer * args.viewers as u64;
    let lost = expected.saturating_sub(received + missed);
    let quantile = |sorted: &[u64], q: f64| -> Duration {
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
        Duration::from_micros(sorted[index])
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let cpu_s = cpu as f64 / procstat::clock_ticks_per_second() as f64;
    println!(
        "\n== live tail: {} viewers over {} filters, {} lines/s in {} batches/s for {:?} ==",
        args.viewers, args.filters, args.rate, args.batches_per_second, args.duration
    );
    println!(
        "machine: {} cores, {}, load {:.2}",
        procstat::processors(),
        procstat::cpu_model(),
        procstat::load_average()
    );
    println!(
        "ingested {} lines in {:.1} s (slowest batch {:.1} ms); {} line deliveries expected",
        batches * per_batch,
        ingest_time.as_secs_f64(),
        ms(slowest_ingest),
        expected
    );
    println!("opsdeck CPU: {cpu_s:.2} s ({:.0} % of its core)\n", 100.0 * cpu_s / ingest_time.as_secs_f64());
    println!("{:<44}{:>10}{:>10}{:>10}{:>10}", "latency", "p50", "p95", "p99", "max");
    for (label, sorted) in
        [("ingest acknowledged → viewer got the line", &from_ack), ("batch sent → viewer got the line", &from_send)]
    {
        println!(
            "{label:<44}{:>7.1} ms{:>7.1} ms{:>7.1} ms{:>7.1} ms",
            ms(quantile(sorted, 0.5)),
            ms(quantile(sorted, 0.95)),
            ms(quantile(sorted, 0.99)),
            ms(quantile(sorted, 1.0))
        );
    }
    println!("\nreceived {received}, reported missed {missed}, lost silently {lost} (of {expected})");
    let p99 = quantile(&from_ack, 0.99);
    let verdicts = [
        (format!("p99 {:.1} ms (goal ≤ {} ms)", ms(p99), P99_GOAL.as_millis()), p99 <= P99_GOAL && received > 0),
        (format!("lines lost silently: {lost} (goal 0)"), lost == 0),
    ];
    for (what, ok) in &verdicts {
        println!("{} {what}", if *ok { "PASS" } else { "FAIL" });
    }
    println!("lines missed (viewer fell behind, told so): {missed}");
    if verdicts.iter().all(|(_, ok)| *ok) {
        println!("verdict: every goal met");
        Ok(())
    } else {
        println!("verdict: a goal missed");
        std::process::exit(2);
    }
}

fn chrono_now() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

/// One viewer: reads its stream until it has every line or is told to stop.
async fn view(
    client: reqwest::Client,
    url: reqwest::Url,
    token: String,
    clock: Arc<Clock>,
    ready: tokio::sync::mpsc::Sender<()>,
    stop: stop_signal::Stop,
    expected: u64,
) -> anyhow::Result<Seen> {
    let mut response = client.get(url).bearer_auth(token).send().await.context("open the tail")?;
    if !response.status().is_success() {
        bail!("tail: HTTP {}", response.status());
    }
    let mut seen = Seen::default();
    let mut buffer = String::new();
    let mut ready = Some(ready);
    loop {
        let chunk = tokio::select! {
            () = stop.stopped() => return Ok(seen),
            chunk = response.chunk() => chunk?,
        };
        let Some(chunk) = chunk else { return Ok(seen) };
        let now = clock.now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let event = block.lines().find_map(|l| l.strip_prefix("event:")).map(str::trim).unwrap_or_default();
            let data = block.lines().find_map(|l| l.strip_prefix("data:")).map(str::trim).unwrap_or_default();
            match event {
                "heartbeat" => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(()).await;
                    }
                }
                "missed" => {
                    let value: serde_json::Value = serde_json::from_str(data)?;
                    seen.missed += value["missed"].as_u64().unwrap_or(0);
                }
                "line" => {
                    let value: serde_json::Value = serde_json::from_str(data)?;
                    let message = value["message"].as_str().unwrap_or_default();
                    let batch: usize =
                        message.split(' ').nth(2).and_then(|b| b.parse().ok()).context("a bench line")?;
                    let acknowledged = clock.acknowledged[batch].load(Ordering::SeqCst);
                    // A line can arrive before its ingest answer does: that is no wait at all.
                    seen.from_ack_us.push(if acknowledged == 0 { 0 } else { now.saturating_sub(acknowledged) });
                    seen.from_send_us.push(now.saturating_sub(clock.sent[batch].load(Ordering::SeqCst)));
                }
                _ => {}
            }
        }
        if seen.from_ack_us.len() as u64 + seen.missed >= expected {
            return Ok(seen);
        }
    }
}

/// A tiny stop signal (a cancellation token without the extra dependency).
mod stop_signal {
    use std::sync::Arc;

    #[derive(Clone, Default)]
    pub struct Stop(Arc<tokio::sync::Notify>, Arc<std::sync::atomic::AtomicBool>);

    impl Stop {
        pub fn stop(&self) {
            self.1.store(true, std::sync::atomic::Ordering::SeqCst);
            self.0.notify_waiters();
        }

        pub async fn stopped(&self) {
            let notified = self.0.notified();
            if self.1.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}
