//! Parser unit tests: every point the encoder writes reads back the same, and each kind of bad
//! line is refused with its number and a reason that names the element.

use super::*;

/// Encodes `point`, parses the line and expects the same point back (tags sorted, as the
/// encoder writes them).
fn round_trips(point: Point) {
    let line = point.to_line().expect("encodes");
    assert_eq!(parse_line(&line).as_ref(), Ok(&point), "line {line:?}");
}

fn refused(body: &str) -> LineError {
    let (points, mut errors) = parse_lines(body, Precision::Nanoseconds);
    assert!(points.is_empty(), "{body:?} gave {points:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.remove(0)
}

#[test]
fn every_field_type_round_trips() {
    round_trips(
        Point::new("requests")
            .tag("service", "web")
            .tag("version", "v2")
            .field("count", 12_i64)
            .field("min", i64::MIN)
            .field("bytes", u64::MAX)
            .field("latency_ms", 3.25)
            .field("tiny", -0.000_001)
            .field("huge", 1e21)
            .field("ok", true)
            .field("bad", false)
            .field("route", "/api")
            .timestamp_ns(1_700_000_000_000_000_000),
    );
    round_trips(Point::new("m").field("v", 1.0).timestamp_ns(-5));
}

#[test]
fn escaped_names_and_values_round_trip() {
    round_trips(Point::new("cpu load,x=1").tag("a b", "c,d=e").field("f=g h,i", 1_i64));
    round_trips(Point::new("m").tag("t", r"a\,b").tag("u", r"\\server\share").field("v", 1_i64));
    round_trips(Point::new(r"a\b").tag(r"k\ey", r"x\ y=z\ q").field(r"f\g", 1_i64));
    round_trips(Point::new("m").field("msg", r#"say "hi" C:\path, a=b ends\"#));
    round_trips(Point::new("m").field("two", "line one\nline two").field("after", 2_i64));
    let hostile = r#"x" y=1 z,evil=2\ q"#;
    round_trips(Point::new("m").tag("t", hostile).field("s", hostile));
    round_trips(Point::new("ünïcode ✓").tag("ключ", "値").field("emoji", "🙂"));
}

#[test]
fn a_batch_reads_every_point_with_its_line_number() {
    let body = "# a comment\n\nm v=1i 1\r\nm,t=x s=\"a\nb\" 2\n   \nm v=3i 3";
    let (points, errors) = parse_lines(body, Precision::Nanoseconds);
    assert!(errors.is_empty(), "{errors:?}");
    let lines: Vec<_> = points.iter().map(|(line, _)| *line).collect();
    assert_eq!(lines, vec![3, 4, 7]);
    assert_eq!(points[1].1, Point::new("m").tag("t", "x").field("s", "a\nb").timestamp_ns(2));
}

#[test]
fn booleans_take_every_spelling_influxdb_reads() {
    for (text, value) in [("t", true), ("T", true), ("True", true), ("TRUE", true), ("f", false), ("FALSE", false)] {
        assert_eq!(parse_line(&format!("m b={text}")), Ok(Point::new("m").field("b", value)), "{text}");
    }
}

#[test]
fn timestamps_are_scaled_by_the_precision() {
    for (precision, ns) in [
        (Precision::Nanoseconds, 1_700_000_000),
        (Precision::Microseconds, 1_700_000_000_000),
        (Precision::Milliseconds, 1_700_000_000_000_000),
        (Precision::Seconds, 1_700_000_000_000_000_000),
    ] {
        let (points, errors) = parse_lines("m v=1 1700000000", precision);
        assert!(errors.is_empty());
        assert_eq!(points[0].1.timestamp_ns_opt(), Some(ns), "{precision:?}");
    }
    let error = parse_lines("m v=1 99999999999", Precision::Seconds).1;
    assert!(error[0].reason.contains("out of range"), "{error:?}");
    assert_eq!("ms".parse(), Ok(Precision::Milliseconds));
    assert!("h".parse::<Precision>().is_err());
}

#[test]
fn each_kind_of_bad_line_is_named_with_its_reason() {
    for (body, needle) in [
        (" v=1", "has no fields"),
        ("m", "has no fields"),
        ("m ", "has no fields"),
        ("m,t v=1", "tag \"t\" has no value"),
        ("m,t= v=1", "tag \"t\" has an empty value"),
        ("m,=x v=1", "an empty tag key"),
        ("m,t=a=b v=1", "unescaped '='"),
        ("m v", "field \"v\" has no value"),
        ("m =1", "an empty field key"),
        ("m v=", "field \"v\" has an empty value"),
        ("m v=abc", "is not a number"),
        ("m v=NaN", "is not a number"),
        ("m v=inf", "is not a number"),
        ("m v=1e400", "too large"),
        ("m v=99999999999999999999i", "integer \"99999999999999999999i\" is out of range"),
        ("m v=-1u", "is not a number"),
        ("m v=\"open", "no closing double quote"),
        ("m v=1 12x", "timestamp \"12x\""),
        ("m v=1 1 extra", "unexpected text \"extra\""),
    ] {
        let error = refused(body);
        assert_eq!(error.line, 1);
        assert!(error.reason.contains(needle), "{body:?}: {:?} lacks {needle:?}", error.reason);
    }
}

#[test]
fn bad_lines_are_all_reported_and_good_ones_still_read() {
    let (points, errors) = parse_lines("ok v=1\nbad\nok v=2\nm v=x\n", Precision::Nanoseconds);
    assert_eq!(points.len(), 2);
    assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), vec![2, 4]);
}
