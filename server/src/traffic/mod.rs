//! Traffic: the policy that shares each service's requests between its versions
//! ([`store`]: read and change it, with revisions), the routing table a data plane works from
//! ([`table`]: every service's policy and routable instances, loaded in one go), and the
//! [`TrafficProvider`] trait each data plane implements (the built-in `opsdeck router`, HAProxy).
//!
//! Release control writes policies through [`store::write`] only; PostgreSQL NOTIFY on
//! [`store::CHANNEL`] tells every data plane, which reloads the [`table::RoutingTable`] and applies
//! it whole — no request ever sees half a policy.

pub mod haproxy;
pub mod store;
pub mod table;
pub mod watch;

use std::sync::Arc;

pub use table::{RoutingTable, ServiceRoutes, Upstream};

/// A data plane that applies routing tables: the built-in router swaps its table in; the HAProxy
/// provider turns the difference into runtime-API commands. Called with every new table (after
/// a policy change, an instance change, or a periodic reload), never concurrently.
#[async_trait::async_trait]
pub trait TrafficProvider: Send + Sync {
    /// A short name for logs and `/readyz` (`router`, `haproxy`).
    fn name(&self) -> &'static str;

    /// Puts `table` in effect. An error leaves the previous table in effect and is retried with
    /// the next table.
    async fn apply(&self, table: Arc<RoutingTable>) -> anyhow::Result<()>;
}
