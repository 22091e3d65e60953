//! W3C trace context (`traceparent: 00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`)
//! for the demo services: read it from an incoming request, start a new span under it (or a new
//! trace when it is absent or malformed), and pass it on to the services this one calls.
//!
//! Parsing follows the W3C Trace Context rules that matter for us: lowercase hex only, no
//! all-zero ids, version `ff` is invalid, and a future version may append fields after the flags.
//! A header that breaks them starts a new trace; it never fails the request.

use std::fmt;

/// The header that carries the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// A request's place in a trace, as one service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits, shared by every service the request passes through.
    pub trace_id: String,
    /// 16 lowercase hex digits: this service's span for the request.
    pub span_id: String,
    /// The caller's span, when the request came with a valid `traceparent`.
    pub parent_span_id: Option<String>,
}

/// Why an incoming `traceparent` was not used (a new trace was started instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TraceContext {
    /// A new trace with this service's span at its root (the request entered the system here).
    pub fn new_root() -> Self {
        Self { trace_id: random_hex_id::<16>(), span_id: random_hex_id::<8>(), parent_span_id: None }
    }

    /// This service's span for a request that arrived with `header` (the raw `traceparent`
    /// value, if any): a child of the caller's span, or a new root when the header is absent or
    /// malformed. The second value says why a header present was not used.
    pub fn for_incoming(header: Option<&[u8]>) -> (Self, Option<Malformed>) {
        let Some(raw) = header else { return (Self::new_root(), None) };
        match parse_traceparent(raw) {
            Ok((trace_id, parent_span_id)) => {
                (Self { trace_id, span_id: random_hex_id::<8>(), parent_span_id: Some(parent_span_id) }, None)
            }
            Err(why) => (Self::new_root(), Some(why)),
        }
    }

    /// The `traceparent` value for a call this service makes: same trace, this span as the parent.
    pub fn outgoing_header(&self) -> String {
        let mut value = String::with_capacity(3 + self.trace_id.len() + 1 + self.span_id.len() + 3);
        value.push_str("00-");
        value.push_str(&self.trace_id);
        value.push('-');
        value.push_str(&self.span_id);
        value.push_str("-01");
        value
    }
}

/// Reads a `traceparent` value into (trace id, parent span id).
pub fn parse_traceparent(raw: &[u8]) -> Result<(String, String), Malformed> {
    let text = std::str::from_utf8(raw).map_err(|_| Malformed("traceparent is not ASCII".into()))?.trim();
    let mut parts = text.splitn(5, '-');
    let (Some(version), Some(trace_id), Some(span_id), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed(format!("traceparent {:?} does not have four '-'-separated parts", shorten(text))));
    };
    let rest = parts.next();
    check_hex("version", version, 2)?;
    if version == "ff" {
        return Err(Malformed("traceparent version ff is invalid".into()));
    }
    // Version 00 has exactly four parts; later versions may add more after the flags.
    if version == "00" && rest.is_some() {
        return Err(Malformed("traceparent version 00 has exactly four parts".into()));
    }
    check_hex("trace id", trace_id, 32)?;
    check_hex("parent span id", span_id, 16)?;
    check_hex("flags", flags, 2)?;
    if trace_id.bytes().all(|b| b == b'0') {
        return Err(Malformed("traceparent trace id is all zeros".into()));
    }
    if span_id.bytes().all(|b| b == b'0') {
        return Err(Malformed("traceparent parent span id is all zeros".into()));
    }
    Ok((trace_id.to_owned(), span_id.to_owned()))
}

fn check_hex(what: &str, value: &str, digits: usize) -> Result<(), Malformed> {
    let lowercase_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if value.len() == digits && value.bytes().all(lowercase_hex) {
        Ok(())
    } else {
        Err(Malformed(format!("traceparent {what} {:?} is not {digits} lowercase hex digits", shorten(value))))
    }
}

/// At most 64 characters of a header, for messages.
fn shorten(text: &str) -> String {
    text.chars().take(64).collect()
}

/// `N` random bytes as lowercase hex, never all zeros (which W3C reserves for "invalid").
fn random_hex_id<const N: usize>() -> String {
    loop {
        let bytes: [u8; N] = std::array::from_fn(|_| fastrand::u8(..));
        if bytes.iter().any(|b| *b != 0) {
            // One allocation; `format!` per byte showed up in the router's profile.
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let mut id = String::with_capacity(N * 2);
            for b in bytes {
                id.push(char::from(HEX[usize::from(b >> 4)]));
                id.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn is_hex(value: &str, digits: usize) -> bool {
        check_hex("id", value, digits).is_ok() && value.bytes().any(|b| b != b'0')
    }

    #[test]
    fn a_valid_traceparent_continues_its_trace_under_a_new_span() {
        let (context, malformed) = TraceContext::for_incoming(Some(VALID.as_bytes()));
        assert_eq!(malformed, None);
        assert_eq!(context.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(is_hex(&context.span_id, 16));
        assert_ne!(context.span_id, "00f067aa0ba902b7", "a span of its own");
        assert_eq!(
            context.outgoing_header(),
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", context.span_id),
            "calls carry the same trace with this span as their parent"
        );
    }

    #[test]
    fn no_traceparent_starts_a_new_root_trace() {
        let (context, malformed) = TraceContext::for_incoming(None);
        assert_eq!(malformed, None);
        assert!(is_hex(&context.trace_id, 32) && is_hex(&context.span_id, 16), "{context:?}");
        assert_eq!(context.parent_span_id, None);
        let (again, _) = TraceContext::for_incoming(None);
        assert_ne!(again.trace_id, context.trace_id, "each root is a new trace");
    }

    #[test]
    fn a_generated_header_parses_back_to_the_same_trace_and_span() {
        let root = TraceContext::new_root();
        let (trace_id, parent) = parse_traceparent(root.outgoing_header().as_bytes()).expect("valid");
        assert_eq!((trace_id, parent), (root.trace_id, root.span_id));
    }

    #[test]
    fn a_future_version_with_extra_fields_is_accepted() {
        let header = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        let (trace_id, _) = parse_traceparent(header.as_bytes()).expect("future versions may add fields");
        assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn malformed_traceparents_start_a_new_trace_and_say_why_never_panicking() {
        let cases: &[&[u8]] = &[
            b"",
            b"garbage",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736x-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            b"0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-\xff\xfe-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e47\xc3\xa9-00f067aa0ba902b7-01",
            b"----",
        ];
        for raw in cases {
            let (context, malformed) = TraceContext::for_incoming(Some(raw));
            let why = malformed.unwrap_or_else(|| panic!("{:?} was accepted", String::from_utf8_lossy(raw)));
            assert!(why.0.starts_with("traceparent"), "{why}");
            assert_eq!(context.parent_span_id, None, "a new root for {:?}", String::from_utf8_lossy(raw));
            assert!(is_hex(&context.trace_id, 32));
        }
    }

    #[test]
    fn surrounding_whitespace_is_tolerated() {
        assert!(parse_traceparent(format!("  {VALID} ").as_bytes()).is_ok());
    }
}
