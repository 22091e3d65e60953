//! One module per route.

pub mod admin;
pub mod audit;
pub mod login;
pub mod logs;
pub mod nodes;
pub mod not_found;
pub mod overview;
pub mod release_detail;
pub mod releases;
pub mod services;
pub mod topology;
pub mod trace;
