use super::*;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z").expect("a time").with_timezone(&Utc)
}

const WEEK: Duration = Duration::from_secs(7 * 86_400);

fn refused(body: &str) -> Vec<LineError> {
    match parse(body.as_bytes(), now(), WEEK) {
        Ok(batch) => panic!("accepted {} lines of a bad batch", batch.lines),
        Err(errors) => errors,
    }
}

fn line(extra: &str) -> String {
    format!(r#"{{"time": "2026-11-30T11:59:00Z", "level": "info", "message": "hello"{extra}}}"#)
}

#[test]
fn a_good_batch_becomes_one_copy_row_per_line_with_nulls_and_days() {
    let body = format!("{}\n\n{}\n", line(""), line(r#", "service": "web", "fields": {"status": 200}"#));
    let batch = parse(body.as_bytes(), now(), WEEK).expect("accepted");
    assert_eq!(batch.lines, 2);
    assert_eq!(batch.days.len(), 1);
    let text = String::from_utf8(batch.copy_text).expect("utf-8");
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], "2026-11-30T11:59:00Z\t1\thello\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t{}");
    assert_eq!(rows[1], "2026-11-30T11:59:00Z\t1\thello\t\\N\t\\N\tweb\t\\N\t\\N\t\\N\t{\"status\":200}");
}

#[test]
fn copy_escaping_leaves_only_data_in_a_column() {
    let mut out = Vec::new();
    escape("a\tb\nc\\d\re '\"<script>\\. ü", &mut out);
    assert_eq!(String::from_utf8(out).expect("utf-8"), "a\\tb\\nc\\\\d\\re '\"<script>\\\\. ü");
}

#[test]
fn each_bad_line_is_named_with_its_field_and_reason() {
    let body = [
        "not json".to_owned(),
        line(r#", "level2": "x""#),
        r#"{"time": "yesterday", "level": "info", "message": "m"}"#.to_owned(),
        r#"{"time": "2026-11-30T11:59:00Z", "level": "WARN", "message": "m"}"#.to_owned(),
        r#"{"time": "2026-11-30T11:59:00Z", "level": "info"}"#.to_owned(),
        r#"{"time": "2026-11-30T11:59:00Z", "level": "info", "message": 3}"#.to_owned(),
        line(r#", "fields": [1]"#),
        r#"{"time": "2026-11-30T11:59:00Z", "level": "info", "message": "a\u0000b"}"#.to_owned(),
        line(r#", "trace_id": "a b""#),
        r#"{"time": "2026-11-01T00:00:00Z", "level": "info", "message": "m"}"#.to_owned(),
        r#"{"time": "2026-11-30T14:00:00Z", "level": "info", "message": "m"}"#.to_owned(),
        format!(r#"{{"time": "2026-11-30T11:59:00Z", "level": "info", "message": "{}"}}"#, "x".repeat(MAX_LINE_BYTES)),
        "[1, 2]".to_owned(),
        line(r#", "fields": {"k": "\u0000"}"#),
    ]
    .join("\n");
    let errors = refused(&body);
    let got: Vec<(usize, Option<&str>)> = errors.iter().map(|e| (e.line, e.field.as_deref())).collect();
    assert_eq!(
        got,
        vec![
            (1, None),
            (2, Some("level2")),
            (3, Some("time")),
            (4, Some("level")),
            (5, Some("message")),
            (6, Some("message")),
            (7, Some("fields")),
            (8, Some("message")),
            (9, Some("trace_id")),
            (10, Some("time")),
            (11, Some("time")),
            (12, None),
            (13, None),
            (14, Some("fields")),
        ]
    );
    assert!(errors[0].reason.starts_with("not JSON"), "{}", errors[0].reason);
    assert!(errors[3].reason.contains("debug, info, warning, error, fatal"), "{}", errors[3].reason);
    assert!(errors[4].reason.contains("required"), "{}", errors[4].reason);
    assert!(errors[9].reason.contains("retention"), "{}", errors[9].reason);
    assert!(errors[10].reason.contains("ahead"), "{}", errors[10].reason);
    assert!(errors[11].reason.contains("bytes"), "{}", errors[11].reason);
}

#[test]
fn a_batch_over_the_line_limit_is_refused_at_the_first_line_too_many() {
    let body = vec![line(""); MAX_LINES + 1].join("\n");
    let errors = refused(&body);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, MAX_LINES + 1);
}

#[test]
fn each_copy_row_gets_its_drawn_id_as_the_last_column() {
    let rows = with_ids(b"a\\nb\tx\nc\n", &[7, 8]);
    assert_eq!(String::from_utf8(rows).expect("utf-8"), "a\\nb\tx\t7\nc\t8\n");
}
