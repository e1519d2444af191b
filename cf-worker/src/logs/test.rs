use super::*;

fn meta() -> Meta<'static> {
    Meta {
        target: "app::jobs",
        module: Some("app::jobs"),
        file: Some("src/jobs.rs"),
        line: Some(42),
        name: "event src/jobs.rs:42",
    }
}

/// The body of a whole record, checking its marker and length.
fn body(record: &[u8]) -> &[u8] {
    assert!(record.len() <= MAX_RECORD, "{} bytes", record.len());
    let rest = record.strip_prefix(LOG_START).expect("the marker");
    let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
    assert_eq!(len, rest.len() - 2);
    &rest[2..]
}

#[test]
fn a_record_reads_back_as_written() {
    let mut w = Writer::new(3, "square", &meta());
    assert!(w.field("message", Kind::Text, "hello"));
    assert!(w.field("n", Kind::U64, "7"));
    let record = w.finish();
    let r = decode(body(&record)).expect("a record");
    assert_eq!(
        r,
        Record {
            level: 3,
            task: "square",
            target: "app::jobs",
            module: Some("app::jobs"),
            file: Some("src/jobs.rs"),
            line: Some(42),
            name: "event src/jobs.rs:42",
            fields: vec![
                Field {
                    name: "message",
                    kind: Kind::Text,
                    value: "hello"
                },
                Field {
                    name: "n",
                    kind: Kind::U64,
                    value: "7"
                },
            ],
        }
    );
}

#[test]
fn a_long_record_is_cut_to_one_pipe_write_at_a_char_boundary() {
    let long = "é".repeat(MAX_RECORD);
    let mut w = Writer::new(1, &"t".repeat(1000), &meta());
    assert!(w.field("message", Kind::Text, &long));
    assert!(!w.field("after", Kind::I64, "1"), "no room is left");
    let record = w.finish();
    let r = decode(body(&record)).expect("a record");
    assert_eq!(r.task.len(), MAX_META);
    assert!(r.task.ends_with('…'));
    assert_eq!(r.fields.len(), 1);
    assert!(r.fields[0].value.ends_with('…'), "{}", r.fields[0].value);
    assert!(r.fields[0].value.len() > 3000);
}

#[test]
fn a_cut_number_becomes_text() {
    let mut w = Writer::new(1, "t", &meta());
    assert!(w.field("message", Kind::Text, &"x".repeat(MAX_RECORD - 400)));
    assert!(w.field("n", Kind::U64, &"9".repeat(400)));
    let record = w.finish();
    let r = decode(body(&record)).expect("a record");
    assert_eq!(r.fields[1].kind, Kind::Text);
}

#[test]
fn garbage_is_not_a_record() {
    assert_eq!(decode(b""), None);
    assert_eq!(decode(b"\x09"), None);
    let mut w = Writer::new(2, "t", &meta());
    w.field("message", Kind::Text, "m");
    let record = w.finish();
    let b = body(&record);
    assert_eq!(decode(&b[..b.len() - 1]), None);
}
