//! The failure switch of a demo service: how it answers right now.

use std::fmt;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// How a demo service answers its health checks and requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Answers at once with 200.
    #[default]
    Healthy,
    /// Answers 200, but only after the slow delay (longer than the checker's 2 s default timeout).
    Slow,
    /// Answers 503 with a body that says the failure was switched on by hand.
    Error,
    /// Exits at once without deregistering, like a crash; the heartbeats stop with it.
    Exit,
    /// Healthy to its health checks, but answers 500 to a share of its work requests
    /// (`--error-share`, default 0.5): a bad release that only request metrics reveal.
    Faulty,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Healthy => "healthy",
            Mode::Slow => "slow",
            Mode::Error => "error",
            Mode::Exit => "exit",
            Mode::Faulty => "faulty",
        }
    }

    fn from_index(index: u8) -> Self {
        match index {
            1 => Mode::Slow,
            2 => Mode::Error,
            3 => Mode::Exit,
            4 => Mode::Faulty,
            _ => Mode::Healthy,
        }
    }

    fn index(self) -> u8 {
        match self {
            Mode::Healthy => 0,
            Mode::Slow => 1,
            Mode::Error => 2,
            Mode::Exit => 3,
            Mode::Faulty => 4,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of `GET`/`PUT /demo/mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeBody {
    pub mode: Mode,
}

/// Reads a `{"mode": …}` body whatever its content type says (so a bare `curl -d` works), with
/// a refusal that shows what is expected.
pub fn parse_mode_body(body: &[u8]) -> Result<ModeBody, String> {
    serde_json::from_slice(body).map_err(|error| {
        format!("mode: expected a JSON body {{\"mode\": \"healthy\" | \"slow\" | \"error\" | \"exit\" | \"faulty\"}} ({error})")
    })
}

/// The current mode, shared between the request handlers without a lock.
#[derive(Debug, Default)]
pub struct ModeSwitch(std::sync::atomic::AtomicU8);

impl ModeSwitch {
    pub fn new(mode: Mode) -> Self {
        Self(std::sync::atomic::AtomicU8::new(mode.index()))
    }

    pub fn get(&self) -> Mode {
        Mode::from_index(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub fn set(&self, mode: Mode) {
        self.0.store(mode.index(), std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_survives_the_switch_and_json() {
        for mode in [Mode::Healthy, Mode::Slow, Mode::Error, Mode::Exit, Mode::Faulty] {
            let switch = ModeSwitch::new(Mode::Healthy);
            switch.set(mode);
            assert_eq!(switch.get(), mode);
            let json = serde_json::to_string(&ModeBody { mode }).expect("serialises");
            assert_eq!(json, format!("{{\"mode\":\"{mode}\"}}"));
            assert_eq!(parse_mode_body(json.as_bytes()).expect("parses").mode, mode);
        }
    }

    #[test]
    fn a_bad_mode_body_is_refused_with_what_is_expected() {
        for body in ["", "{}", "{\"mode\":\"broken\"}", "{\"mode\":\"slow\",\"extra\":1}"] {
            let refusal = parse_mode_body(body.as_bytes()).expect_err(body);
            assert!(refusal.starts_with("mode: expected") && refusal.contains("\"exit\""), "{refusal}");
        }
    }
}
