//! Status shown as colour *and* shape *and* word, so it reads right in grey scale and for
//! colour-blind people (see UI.md).

use leptos::prelude::*;

/// The health vocabulary every page uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Healthy,
    Degraded,
    Down,
    Unknown,
}

impl Status {
    /// The shape that carries the status without colour.
    pub fn glyph(self) -> &'static str {
        match self {
            Status::Healthy => "●",
            Status::Degraded => "▲",
            Status::Down => "✕",
            Status::Unknown => "◌",
        }
    }

    /// The CSS state class (`is-healthy`, …) that picks the colour.
    pub fn class(self) -> &'static str {
        match self {
            Status::Healthy => "is-healthy",
            Status::Degraded => "is-degraded",
            Status::Down => "is-down",
            Status::Unknown => "is-unknown",
        }
    }
}

/// A status mark: glyph plus label, coloured by state.
#[component]
pub fn StatusMark(status: Status, #[prop(into)] label: String) -> impl IntoView {
    view! {
        <span class=format!("status-mark {}", status.class())>
            <span class="status-glyph" aria-hidden="true">{status.glyph()}</span>
            <span class="status-label">{label}</span>
        </span>
    }
}

impl From<crate::model::health::Health> for Status {
    fn from(health: crate::model::health::Health) -> Self {
        use crate::model::health::Health;
        match health {
            Health::Healthy => Status::Healthy,
            Health::Degraded => Status::Degraded,
            Health::Down => Status::Down,
            Health::Unknown => Status::Unknown,
        }
    }
}

impl From<crate::model::topology::InstanceHealth> for Status {
    fn from(health: crate::model::topology::InstanceHealth) -> Self {
        crate::model::health::Health::of_instance(health).into()
    }
}
