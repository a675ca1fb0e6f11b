//! A Server-Sent Events parser (the `text/event-stream` format of the HTML
//! standard), fed bytes as they arrive from the network.
//!
//! Follows the standard's line rules (LF, CRLF or CR line ends; `field: value`
//! with one optional space removed; `:` comments ignored; `data` lines joined
//! with LF; `id` without NUL; `retry` in ASCII digits), with one deliberate
//! difference: an event that names its type but carries no data (`event: reset`
//! alone) is still dispatched, since the vault's `reset` needs no data and a
//! client that dropped it would miss a reload. A maintained crate was
//! considered (`eventsource-stream`): it drops such events, slices a BOM at a
//! byte that is not a character boundary, and is no longer released.

/// Limit on one line (and on one event's data): a server is not trusted to
/// send unbounded input.
const MAX_LINE: usize = 256 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `message` when the stream named none.
    pub kind: String,
    pub data: String,
    /// The last event id seen so far on this stream (ids persist across events).
    pub id: Option<String>,
}

/// What the parser found in the bytes fed so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    Event(Event),
    /// A `retry:` field: the reconnection delay in milliseconds.
    Retry(u64),
}

#[derive(Default)]
pub struct Parser {
    /// Bytes of an incomplete line.
    pending: Vec<u8>,
    /// The previous chunk ended in CR: an LF at the start of the next one
    /// belongs to the same line end.
    after_cr: bool,
    started: bool,
    kind: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
}

/// A stream sent more than the parser accepts in one line or event.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLong;

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Seeds the last event id (a resumed stream keeps the id it resumed from
    /// until the server sends a new one).
    pub fn with_last_id(id: Option<String>) -> Self {
        Self {
            last_id: id,
            ..Self::default()
        }
    }

    /// Feeds `chunk`; returns the events and retry fields it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Item>, TooLong> {
        let mut out = Vec::new();
        let mut rest = chunk;
        if self.after_cr && rest.first() == Some(&b'\n') {
            rest = &rest[1..];
        }
        self.after_cr = false;
        while let Some(end) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let mut line = std::mem::take(&mut self.pending);
            line.extend_from_slice(&rest[..end]);
            let was_cr = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if was_cr {
                if rest.first() == Some(&b'\n') {
                    rest = &rest[1..];
                } else if rest.is_empty() {
                    self.after_cr = true;
                }
            }
            self.line(&line, &mut out)?;
        }
        self.pending.extend_from_slice(rest);
        if self.pending.len() > MAX_LINE {
            return Err(TooLong);
        }
        Ok(out)
    }

    fn line(&mut self, raw: &[u8], out: &mut Vec<Item>) -> Result<(), TooLong> {
        let mut line = String::from_utf8_lossy(raw).into_owned();
        if !self.started {
            self.started = true;
            if let Some(stripped) = line.strip_prefix('\u{feff}') {
                line = stripped.to_string();
            }
        }
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => self.kind = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                if self.data.len() > MAX_LINE {
                    return Err(TooLong);
                }
            }
            "id" if !value.contains('\0') => {
                self.last_id = (!value.is_empty()).then(|| value.to_string());
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    out.push(Item::Retry(ms));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<Item>) {
        let kind = std::mem::take(&mut self.kind);
        let data = std::mem::take(&mut self.data);
        let has_data = std::mem::replace(&mut self.has_data, false);
        if !has_data && kind.is_empty() {
            return;
        }
        out.push(Item::Event(Event {
            kind: if kind.is_empty() {
                "message".into()
            } else {
                kind
            },
            data,
            id: self.last_id.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, data: &str, id: Option<&str>) -> Item {
        Item::Event(Event {
            kind: kind.into(),
            data: data.into(),
            id: id.map(str::to_string),
        })
    }

    #[test]
    fn the_contract_example_parses_into_retry_events_and_skips_pings() {
        let text =
            "retry: 1000\n\nid: 7\nevent: secret_updated\ndata: {\"path\":\"a/b\"}\n\n: ping\n\n";
        let items = Parser::new().feed(text.as_bytes()).expect("parses");
        assert_eq!(
            items,
            vec![
                Item::Retry(1000),
                event("secret_updated", "{\"path\":\"a/b\"}", Some("7")),
            ]
        );
    }

    #[test]
    fn every_byte_split_gives_the_same_events() {
        let text = b"\xef\xbb\xbfid: a\r\nevent: x\r\ndata: one\r\ndata:two\r\n\r\ndata: three\r\r: c\n\nevent: reset\n\n";
        let expected = vec![
            event("x", "one\ntwo", Some("a")),
            event("message", "three", Some("a")),
            event("reset", "", Some("a")),
        ];
        for split in 0..=text.len() {
            let mut p = Parser::new();
            let mut items = p.feed(&text[..split]).expect("first half");
            items.extend(p.feed(&text[split..]).expect("second half"));
            assert_eq!(items, expected, "split at {split}");
        }
        // One byte at a time.
        let mut p = Parser::new();
        let items: Vec<Item> = text
            .iter()
            .flat_map(|b| p.feed(&[*b]).expect("byte"))
            .collect();
        assert_eq!(items, expected);
    }

    #[test]
    fn field_rules_of_the_standard() {
        // (stream, expected items, why)
        let cases: Vec<(&str, Vec<Item>, &str)> = vec![
            (
                "data\n\n",
                vec![event("message", "", None)],
                "a bare field name has an empty value",
            ),
            (
                "data:  two spaces\n\n",
                vec![event("message", " two spaces", None)],
                "only one space is removed",
            ),
            ("id: 1\n\n", vec![], "an id alone dispatches nothing"),
            (
                "id: 1\n\ndata: x\n\n",
                vec![event("message", "x", Some("1"))],
                "the id persists to later events",
            ),
            (
                "id: 1\n\nid\ndata: x\n\n",
                vec![event("message", "x", None)],
                "an empty id clears it",
            ),
            (
                "id: a\0b\ndata: x\n\n",
                vec![event("message", "x", None)],
                "an id with NUL is ignored",
            ),
            (
                "retry: 12x\nretry: 5\n\n",
                vec![Item::Retry(5)],
                "retry must be digits",
            ),
            ("data: x\n", vec![], "no dispatch before the blank line"),
            (
                "unknown: y\ndata: x\n\n",
                vec![event("message", "x", None)],
                "unknown fields are ignored",
            ),
        ];
        for (text, expected, why) in cases {
            assert_eq!(
                Parser::new().feed(text.as_bytes()).expect("parses"),
                expected,
                "{why}"
            );
        }
    }

    #[test]
    fn a_resumed_stream_keeps_its_id_until_a_new_one() {
        let mut p = Parser::with_last_id(Some("41".into()));
        assert_eq!(
            p.feed(b"data: x\n\n").expect("parses"),
            vec![event("message", "x", Some("41"))]
        );
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut p = Parser::new();
        let chunk = vec![b'a'; 64 * 1024];
        let mut result = Ok(Vec::new());
        for _ in 0..5 {
            result = p.feed(&chunk);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(TooLong));
    }
}
