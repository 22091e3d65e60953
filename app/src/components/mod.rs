//! Reusable pieces of the UI.

pub mod live;
pub mod readiness;
pub mod shell;
pub mod status;
pub mod theme;
pub mod user_menu;
