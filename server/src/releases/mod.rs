//! Release control: canary, blue-green, rolling and rollback releases as explicit state
//! machines ([`transitions`]), what each action does ([`plan`]), stored in PostgreSQL
//! ([`store`]), carried out by ONE service layer ([`service::Releases`]) that the REST API
//! ([`api`]), the UI's server functions and the controller ([`worker`]: canary [`analysis`]
//! against InfluxDB, held steps, automatic rollback) all go through. Blue-green [`smoke`] checks
//! hit green instances directly; [`schema`] phases refuse a rollback past a contract. Rolling
//! releases ([`rolling`]) replace instances one node at a time through a [`deployer`].

pub mod analysis;
pub mod api;
pub mod deployer;
pub mod error;
pub mod keys;
mod manual;
pub mod plan;
mod rolling;
pub mod schema;
pub mod service;
pub mod smoke;
mod start;
pub mod store;
pub mod transitions;
mod views;
pub mod worker;

pub use api::routes;
pub use error::ReleaseError;
pub use service::{Releases, Who};
