//! Integration tests of the server against the real PostgreSQL and InfluxDB (one test binary
//! for the crate, so it links once). Run through `scripts/test`, which starts both.

mod access;
mod agent;
mod binary;
mod catalog;
mod charts;
mod demo;
mod demo_fleet;
mod demo_outage;
mod demo_router;
mod demo_traffic;
mod events;
mod haproxy;
mod haproxy_routing;
mod health;
mod influx;
mod layers;
mod logs;
mod metrics;
mod openapi;
mod release_cli;
mod release_markers;
mod releases;
mod releases_bluegreen;
mod releases_canary;
mod releases_rolling;
mod releases_schema;
mod router;
mod router_breaker;
mod router_client;
mod router_load;
mod router_outage;
mod router_points;
mod tail;
mod topology;
