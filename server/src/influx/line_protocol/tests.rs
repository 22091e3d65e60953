//! Encoder unit tests: every escaping rule, hostile strings, and refused values.

use super::*;

fn line(point: Point) -> String {
    point.to_line().expect("encodes")
}

#[test]
fn a_plain_point_encodes_fields_by_type_and_sorts_tags() {
    let point = Point::new("requests")
        .tag("version", "v2")
        .tag("service", "web")
        .field("count", 12_i64)
        .field("latency_ms", 3.25)
        .field("ok", true)
        .field("route", "/api")
        .timestamp_ns(1_700_000_000_000_000_000);
    assert_eq!(
        line(point),
        r#"requests,service=web,version=v2 count=12i,latency_ms=3.25,ok=true,route="/api" 1700000000000000000"#
    );
}

#[test]
fn whole_floats_stay_floats_and_never_use_exponents() {
    assert_eq!(line(Point::new("m").field("v", 1.0)), "m v=1");
    assert_eq!(line(Point::new("m").field("v", 1e21)), "m v=1000000000000000000000");
    assert_eq!(line(Point::new("m").field("v", -0.000_001)), "m v=-0.000001");
}

#[test]
fn measurement_escapes_commas_and_spaces_but_not_equals() {
    assert_eq!(line(Point::new("cpu load,x=1").field("v", 1_i64)), r"cpu\ load\,x=1 v=1i");
}

#[test]
fn tag_keys_values_and_field_keys_escape_commas_equals_and_spaces() {
    let point = Point::new("m").tag("a b", "c,d=e").field("f=g h,i", 1_i64);
    assert_eq!(line(point), r"m,a\ b=c\,d\=e f\=g\ h\,i=1i");
}

#[test]
fn string_fields_escape_quotes_and_backslashes_and_keep_other_text() {
    let point = Point::new("m").field("msg", r#"say "hi" C:\path, a=b"#);
    assert_eq!(line(point), r#"m msg="say \"hi\" C:\\path, a=b""#);
}

#[test]
fn a_trailing_backslash_is_refused_outside_string_fields() {
    for point in [
        Point::new("m").tag("path", r"C:\").field("v", 1_i64),
        Point::new(r"m\").field("v", 1_i64),
        Point::new("m").field(r"f\", 1_i64),
    ] {
        assert!(matches!(point.to_line(), Err(LineProtocolError::TrailingBackslash { .. })), "{point:?}");
    }
    assert_eq!(line(Point::new("m").field("v", r"ends\")), r#"m v="ends\\""#);
}

#[test]
fn backslashes_inside_names_are_literal_even_before_an_escaped_character() {
    assert_eq!(line(Point::new("m").tag("t", r"a\,b").field("v", 1_i64)), r"m,t=a\\,b v=1i");
    assert_eq!(line(Point::new("m").tag("t", r"\\server\share").field("v", 1_i64)), r"m,t=\\server\share v=1i");
}

#[test]
fn hostile_strings_stay_inside_their_element() {
    let hostile = r#"x" y=1 z,evil=2\ "#;
    let encoded = line(Point::new("m").tag("t", hostile).field("s", hostile));
    assert_eq!(encoded, r#"m,t=x"\ y\=1\ z\,evil\=2\\  s="x\" y=1 z,evil=2\\ ""#);
}

#[test]
fn newlines_are_allowed_only_inside_string_fields() {
    assert_eq!(line(Point::new("m").field("s", "two\nlines")), "m s=\"two\nlines\"");
    for point in [
        Point::new("m\n").field("v", 1_i64),
        Point::new("m").tag("t\n", "x").field("v", 1_i64),
        Point::new("m").tag("t", "x\r\ny").field("v", 1_i64),
        Point::new("m").field("f\n", 1_i64),
    ] {
        assert!(matches!(point.to_line(), Err(LineProtocolError::Newline { .. })), "{point:?}");
    }
}

#[test]
fn nan_and_infinity_are_refused_with_the_field_named() {
    for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let error = Point::new("m").field("ratio", value).to_line().expect_err("not finite");
        assert!(error.to_string().contains("\"ratio\""), "{error}");
    }
}

#[test]
fn points_without_fields_or_names_are_refused() {
    assert_eq!(Point::new("").field("v", 1_i64).to_line(), Err(LineProtocolError::EmptyMeasurement));
    assert!(matches!(Point::new("m").tag("t", "x").to_line(), Err(LineProtocolError::NoFields { .. })));
    assert!(matches!(
        Point::new("m").tag("", "x").field("v", 1_i64).to_line(),
        Err(LineProtocolError::EmptyKey { .. })
    ));
}

#[test]
fn empty_tag_values_are_left_out() {
    assert_eq!(line(Point::new("m").tag("a", "").tag("b", "x").field("v", 1_i64)), "m,b=x v=1i");
}

#[test]
fn a_failed_point_leaves_the_batch_untouched() {
    let mut out = String::from("m v=1i\n");
    let bad = Point::new("m").field("ok", 1_i64).field("bad", f64::NAN);
    assert!(bad.encode_into(&mut out).is_err());
    assert_eq!(out, "m v=1i\n");
}
