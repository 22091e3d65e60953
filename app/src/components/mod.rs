//! Reusable pieces of the UI.

pub mod admin;
pub mod audit_log;
pub mod chart;
pub mod event_feed;
pub mod live;
pub mod log_line;
pub mod log_tail;
pub mod readiness;
pub mod release_actions;
pub mod release_controls;
pub mod release_dialog;
pub mod release_inbox;
pub mod release_start;
pub mod release_start_form;
pub mod release_view;
pub mod service_logs;
pub mod shell;
pub mod status;
pub mod theme;
pub mod timestamp;
pub mod traffic;
pub mod user_menu;
