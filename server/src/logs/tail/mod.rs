//! Live tail: `GET /api/v1/logs/tail` streams new log lines matching a filter as Server-Sent
//! Events. Ingest announces each committed batch with NOTIFY ([`hub::announce`]); every
//! replica's [`LogTailHub`] reads announced lines back once and fans them out to one shared
//! subscription per distinct filter ([`filter`]); [`stream`] writes each viewer's SSE.

pub mod filter;
pub mod hub;
pub mod stream;

pub use hub::{LogTailHub, TailStats};
pub use stream::routes;

/// The hub's numbers for `/metrics`, read at scrape time.
#[derive(Debug)]
pub struct TailCollector(pub LogTailHub);

impl prometheus_client::collector::Collector for TailCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::{
            encoding::EncodeMetric,
            metrics::{counter::ConstCounter, gauge::ConstGauge},
        };
        let stats = self.0.stats();
        let gauges = [
            (
                "log_tail_subscriptions",
                "Live-tail subscriptions: one per distinct filter being watched",
                stats.subscriptions,
            ),
            ("log_tail_viewers", "Live-tail viewers connected to this server", stats.viewers),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let counters = [
            ("log_tail_lines_dispatched", "Lines handed to live-tail subscriptions", stats.dispatched),
            ("log_tail_lines_missed", "Lines live-tail viewers missed by falling behind", stats.missed),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        Ok(())
    }
}
