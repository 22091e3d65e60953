//! opsdeck's InfluxDB client: line protocol in, InfluxQL out.
//!
//! Written here rather than taken from the `influxdb2` crate (see `docs/architecture.md`): that
//! crate speaks only the v2 API and Flux (404 on InfluxDB 1.x, Flux is gone in 3.x), its encoder
//! writes NaN and mishandles a trailing backslash, and it pins an older hyper/reqwest beside
//! axum's. Writes go to `/write` (v1) or `/api/v2/write` (v2: InfluxDB 2.x and 3.x); queries use
//! InfluxQL on `/query`, which all three majors accept.

mod client;
mod line_protocol;
mod parse;
mod query;

pub use client::{InfluxApi, InfluxAuth, InfluxClient, InfluxConfig, InfluxError};
pub(crate) use line_protocol::escape_into;
pub use line_protocol::{FieldValue, LineProtocolError, Point, encode_all};
pub use parse::{LineError, Precision, parse_line, parse_lines};
pub use query::{QueryResult, Series, quote_identifier, quote_literal};
