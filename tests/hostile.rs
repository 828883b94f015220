//! Malformed and hostile input through the whole pipeline.
//!
//! Every case runs `Pipeline::process_batch` on a fresh in-memory store with the demo config
//! and the embedded templates, and must (a) not panic, (b) be recorded with some verdict, and
//! (c) leave only sane mail in the outbox. "Sane" is checked here from the bytes, without
//! trusting the code under test: the header block (up to the first CRLF CRLF) has no bare CR
//! or LF, no NUL, no non-ASCII byte (encoded words are ASCII), no physical line over 998
//! bytes; only the header names we send, each address header once; `To` / `Reply-To` hold
//! plausible addresses, `In-Reply-To` / `References` only well-formed `<id>`s; the decoded
//! `Subject` has no control or bidi characters. Automatic replies go to a plausible address
//! or are withheld.

mod common;

use common::{QUESTION_BODY, REPORT_BODY, XorShift, base64, mail, recorded};
use secintake::classify::{Kind, Reason};
use secintake::pipeline::{Pipeline, Recorded};
use secintake::reply::{ReplyKind, Templates};
use secintake::store::Store;

/// The header names an outgoing message may carry (lower case).
const ALLOWED_HEADERS: &[&str] = &[
    "from",
    "to",
    "reply-to",
    "subject",
    "message-id",
    "date",
    "in-reply-to",
    "references",
    "auto-submitted",
    "x-secintake-loop",
    "x-auto-response-suppress",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// Headers that must appear at most once.
const SINGLE_HEADERS: &[&str] = &[
    "from",
    "to",
    "reply-to",
    "subject",
    "message-id",
    "date",
    "in-reply-to",
    "references",
];

/// One outbox row.
#[derive(Debug)]
struct OutRow {
    kind: String,
    auto_reply: bool,
    recipients: Vec<String>,
    body: Vec<u8>,
}

/// A checked run.
struct Run {
    rec: Recorded,
    out: Vec<OutRow>,
}

impl Run {
    /// Recipients of automatic replies (acks and rejections).
    fn auto_recipients(&self) -> Vec<String> {
        self.out
            .iter()
            .filter(|r| r.auto_reply)
            .flat_map(|r| r.recipients.clone())
            .collect()
    }
}

fn pipeline() -> Pipeline {
    Pipeline::new(common::demo_config(), Templates::embedded())
}

/// Outbox rows caused by message `message`.
fn outbox(store: &Store, message: i64) -> Vec<OutRow> {
    let mut stmt = store
        .conn()
        .prepare("SELECT kind, auto_reply, recipients, id FROM outbox WHERE message = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([message], |r| {
        let recipients: String = r.get(2)?;
        Ok(OutRow {
            kind: r.get(0)?,
            auto_reply: r.get(1)?,
            recipients: serde_json::from_str(&recipients).expect("recipients are a JSON array"),
            // As it goes out: a forward with its original spliced back in.
            body: secintake::send::rendered(store.conn(), r.get(3)?)
                .unwrap()
                .expect("a row"),
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// Runs one raw message through the pipeline and checks everything that applies to every
/// case.
fn run(p: &Pipeline, label: &str, raw: &[u8]) -> Run {
    let mut store = Store::open_in_memory().unwrap();
    let run = run_in(p, &mut store, label, raw);
    assert_eq!(
        count_outbox(&store),
        run.out.len(),
        "{label}: outbox rows not caused by the message"
    );
    run
}

fn count_outbox(store: &Store) -> usize {
    store
        .conn()
        .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))
        .unwrap() as usize
}

/// As [`run`], on a store that may hold earlier messages and cases.
fn run_in(p: &Pipeline, store: &mut Store, label: &str, raw: &[u8]) -> Run {
    let items = [common::item("local", label, raw.to_vec())];
    let results = p
        .process_batch(store, &items)
        .unwrap_or_else(|e| panic!("{label}: batch failed: {e}"));
    assert_eq!(results.len(), 1, "{label}: one result per item");
    let rec = recorded(label, results.first().unwrap()).clone();
    let out = outbox(store, rec.message);
    assert_eq!(
        out.len(),
        rec.queued.len(),
        "{label}: outbox rows vs Recorded.queued {:?}",
        rec.queued
    );
    for row in &out {
        check_outgoing(label, row);
    }
    check_auto_reply(label, &rec, &out);
    Run { rec, out }
}

/// Runs `check` on every case, catching panics, and fails once with all failing cases: one
/// bad case must not hide the others.
fn each<T>(cases: impl IntoIterator<Item = (String, T)>, mut check: impl FnMut(&str, T)) {
    let mut failures = Vec::new();
    let mut total = 0;
    for (label, case) in cases {
        total += 1;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&label, case)));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("[{label}] {msg}"));
        }
    }
    assert!(total > 0, "no cases ran");
    let shown: Vec<&String> = failures.iter().take(12).collect();
    assert!(
        failures.is_empty(),
        "{} of {total} case(s) failed; the first {}:\n{}",
        failures.len(),
        shown.len(),
        shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
}

/// An acknowledgement or rejection went to a plausible address, or was withheld.
fn check_auto_reply(label: &str, rec: &Recorded, out: &[OutRow]) {
    let autos: Vec<&OutRow> = out.iter().filter(|r| r.auto_reply).collect();
    assert!(
        autos.len() <= 1,
        "{label}: more than one automatic reply: {:?}",
        autos.iter().map(|r| &r.kind).collect::<Vec<_>>()
    );
    for row in &autos {
        assert_eq!(row.recipients.len(), 1, "{label}: {}: recipients", row.kind);
    }
    if rec.verdict.verdict == Kind::Report {
        let acked = rec.queued.contains(&ReplyKind::Ack);
        let withheld = rec.withheld.iter().any(|(k, _)| *k == ReplyKind::Ack);
        assert!(
            acked != withheld,
            "{label}: a report must be acked or have its ack withheld (queued {:?}, withheld {:?})",
            rec.queued,
            rec.withheld
        );
        assert_eq!(
            autos.iter().filter(|r| r.kind == "ack").count(),
            usize::from(acked),
            "{label}: ack rows"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Independent checks of outgoing bytes.

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits at CRLF (a bare CR or LF stays inside a line).
fn crlf_lines(head: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut rest = head;
    while let Some(i) = find(rest, b"\r\n") {
        lines.push(rest.get(..i).unwrap_or_default());
        rest = rest.get(i + 2..).unwrap_or_default();
    }
    lines.push(rest);
    lines
}

/// The unfolded header fields of an outgoing message, checking the raw header block on the way.
fn headers(label: &str, body: &[u8]) -> Vec<(String, String)> {
    let end = find(body, b"\r\n\r\n").unwrap_or_else(|| panic!("{label}: no CRLF CRLF between header and body"));
    let head = body.get(..end).unwrap_or_default();
    assert!(!head.contains(&0), "{label}: NUL in the header block");
    if let Some(b) = head.iter().find(|b| !b.is_ascii()) {
        panic!(
            "{label}: non-ASCII byte {b:#04x} in the header block:\n{}",
            String::from_utf8_lossy(head)
        );
    }
    let text = String::from_utf8_lossy(head);
    let mut fields: Vec<(String, String)> = Vec::new();
    for (n, line) in crlf_lines(head).into_iter().enumerate() {
        assert!(
            !line.contains(&b'\r') && !line.contains(&b'\n'),
            "{label}: bare CR or LF in header line {n}: {:?}",
            String::from_utf8_lossy(line)
        );
        assert!(line.len() <= 998, "{label}: header line {n} is {} bytes", line.len());
        let line = String::from_utf8_lossy(line).into_owned();
        if line.starts_with([' ', '\t']) {
            let last = fields
                .last_mut()
                .unwrap_or_else(|| panic!("{label}: header block starts with a continuation"));
            last.1.push_str(&line);
        } else {
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("{label}: header line without a colon: {line:?}"));
            assert!(
                !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b)),
                "{label}: bad header name {name:?}"
            );
            fields.push((name.to_string(), value.to_string()));
        }
    }
    for (name, _) in &fields {
        let lower = name.to_ascii_lowercase();
        assert!(
            lower != "bcc" && lower != "cc" && !lower.contains("injected"),
            "{label}: injected header {name:?} in:\n{text}"
        );
        assert!(
            ALLOWED_HEADERS.contains(&lower.as_str()),
            "{label}: unexpected header {name:?} in:\n{text}"
        );
    }
    for single in SINGLE_HEADERS {
        let n = fields
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(single))
            .count();
        assert!(n <= 1, "{label}: {single} appears {n} times in:\n{text}");
    }
    fields
}

/// The value of one header, if present.
fn header<'h>(fields: &'h [(String, String)], name: &str) -> Option<&'h str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn check_outgoing(label: &str, row: &OutRow) {
    let label = format!("{label}: {}", row.kind);
    let label = label.as_str();
    let fields = headers(label, &row.body);
    for name in ["To", "Reply-To"] {
        if let Some(v) = header(&fields, name) {
            assert!(
                !v.to_ascii_lowercase().contains("bcc:") && !v.contains("X-Injected"),
                "{label}: {name} carries an injected header: {v:?}"
            );
        }
    }
    let to = header(&fields, "To").unwrap_or_else(|| panic!("{label}: no To"));
    let to_addrs = addresses(to);
    assert!(!to_addrs.is_empty(), "{label}: empty To");
    for a in &to_addrs {
        assert!(plausible_address(a), "{label}: To holds garbage {a:?}");
    }
    for r in &row.recipients {
        assert!(plausible_address(r), "{label}: recipient is garbage {r:?}");
    }
    assert_eq!(
        to_addrs, row.recipients,
        "{label}: To header and envelope recipients differ"
    );
    if let Some(v) = header(&fields, "Reply-To") {
        for a in addresses(v) {
            assert!(plausible_address(&a), "{label}: Reply-To holds garbage {a:?}");
        }
    }
    for name in ["In-Reply-To", "References", "Message-ID"] {
        if let Some(v) = header(&fields, name) {
            let ids: Vec<&str> = v.split_whitespace().collect();
            assert!(!ids.is_empty(), "{label}: empty {name}");
            for id in ids {
                let inner = id
                    .strip_prefix('<')
                    .and_then(|i| i.strip_suffix('>'))
                    .unwrap_or_else(|| panic!("{label}: {name} token {id:?} is not <id>"));
                assert!(
                    plausible_msg_id(inner),
                    "{label}: {name} holds {id:?}, not an RFC 5322 msg-id"
                );
            }
        }
    }
    let subject = header(&fields, "Subject").unwrap_or_else(|| panic!("{label}: no Subject"));
    let decoded = decode_2047(subject);
    assert!(
        !decoded.chars().any(|c| c.is_control() || is_bidi(c)),
        "{label}: decoded Subject has control or bidi characters: {decoded:?}"
    );
}

/// Addresses in an address-list header value (`a@b`, `<a@b>`, `Name <a@b>`), comma-separated
/// outside quotes.
fn addresses(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
            }
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|entry| {
            let entry = entry.trim();
            match (entry.rfind('<'), entry.rfind('>')) {
                (Some(open), Some(close)) if open < close => {
                    entry.get(open + 1..close).unwrap_or_default().trim().to_string()
                }
                _ => entry.to_string(),
            }
        })
        .filter(|a| !a.is_empty())
        .collect()
}

/// An RFC 5321 mailbox we would be willing to mail: dot-atom or quoted local part of at most
/// 64 bytes, exactly one `@` outside quotes, and a host name or address literal.
fn plausible_address(a: &str) -> bool {
    let (local, domain) = if let Some(rest) = a.strip_prefix('"') {
        let Some((inner, after)) = rest.split_once('"') else {
            return false;
        };
        let Some(domain) = after.strip_prefix('@') else {
            return false;
        };
        if !inner.bytes().all(|b| (0x20..=0x7e).contains(&b) && b != b'\\') {
            return false;
        }
        (format!("\"{inner}\""), domain)
    } else {
        let mut parts = a.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b);
        if local.is_empty()
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
            || !local.bytes().all(|b| atext(b) || b == b'.')
        {
            return false;
        }
        (local.to_string(), domain)
    };
    if local.len() > 64 {
        return false;
    }
    if let Some(lit) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        return lit.parse::<std::net::Ipv4Addr>().is_ok()
            || lit
                .strip_prefix("IPv6:")
                .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok());
    }
    !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// RFC 5322 `msg-id` contents: `id-left "@" id-right`, where id-left is a dot-atom-text and
/// id-right a dot-atom-text or a `[...]` literal.
fn plausible_msg_id(id: &str) -> bool {
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b);
    let dot_atom = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && !s.ends_with('.')
            && !s.contains("..")
            && s.bytes().all(|b| atext(b) || b == b'.')
    };
    let Some((left, right)) = id.split_once('@') else {
        return false;
    };
    let literal = right
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .is_some_and(|d| d.bytes().all(|b| (33..=126).contains(&b) && !b"[]\\".contains(&b)));
    dot_atom(left) && (dot_atom(right) || literal)
}

fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Decodes RFC 2047 encoded words (B and Q, bytes taken as UTF-8); whitespace between two
/// encoded words is dropped, as RFC 2047 §6.2 says.
fn decode_2047(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, from) = rest.split_at(start);
        match encoded_word(from) {
            Some((decoded, len)) => {
                if !(after_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&decoded);
                rest = from.get(len..).unwrap_or_default();
                after_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = from.get(2..).unwrap_or_default();
                after_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `=?charset?X?text?=` at the start of `s`: the decoded text and the word's length.
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let body = s.strip_prefix("=?")?;
    let (_charset, rest) = body.split_once('?')?;
    let (enc, rest) = rest.split_once('?')?;
    let (text, _) = rest.split_once("?=")?;
    if text.contains(char::is_whitespace) {
        return None;
    }
    let bytes = match enc {
        "B" | "b" => unbase64(text)?,
        "Q" | "q" => {
            let mut out = Vec::new();
            let mut it = text.bytes();
            while let Some(b) = it.next() {
                match b {
                    b'_' => out.push(b' '),
                    b'=' => {
                        let hi = char::from(it.next()?).to_digit(16)?;
                        let lo = char::from(it.next()?).to_digit(16)?;
                        out.push((hi * 16 + lo) as u8);
                    }
                    b => out.push(b),
                }
            }
            out
        }
        _ => return None,
    };
    let len = 2 + body.len() - rest.len() + text.len() + 2;
    Some((String::from_utf8_lossy(&bytes).into_owned(), len))
}

fn unbase64(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    Some(out)
}

/// No line of the whole outgoing message (body included) starts with an injected header:
/// the raw inputs below never have one at a line start, so one here came from rendering.
fn assert_no_injected_lines(label: &str, run: &Run) {
    for row in &run.out {
        let text = String::from_utf8_lossy(&row.body);
        for line in text.split(['\r', '\n']) {
            let lower = line.to_ascii_lowercase();
            assert!(
                !lower.starts_with("bcc:") && !lower.starts_with("x-injected"),
                "{label}: {}: a line starts with an injected header: {line:?}",
                row.kind
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Message builders.

fn header_lines<'a>(base: &'a [&'a str], without: &[&str]) -> Vec<&'a str> {
    base.iter()
        .copied()
        .filter(|h| {
            !without
                .iter()
                .any(|w| h.get(..w.len()).is_some_and(|p| p.eq_ignore_ascii_case(w)))
        })
        .collect()
}

const BASE: &[&str] = &[
    "From: Igor Petrenko <igor@example.com>",
    "To: security@example.org",
    "Subject: Tomcat HTTP/2 crash lets any client stop the connector",
    "Date: Tue, 17 Mar 2026 10:00:00 +0200",
    "Message-ID: <base@example.com>",
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=UTF-8",
];

/// The base report with some headers replaced: `replace` lists full header lines; any base
/// header with the same name is dropped.
fn report_with(replace: &[&str], body: &str) -> Vec<u8> {
    let without: Vec<String> = replace
        .iter()
        .filter_map(|h| h.split_once(':'))
        .map(|(n, _)| format!("{n}:"))
        .collect();
    let without: Vec<&str> = without.iter().map(String::as_str).collect();
    let mut headers = header_lines(BASE, &without);
    headers.splice(0..0, replace.iter().copied());
    mail(&headers, body)
}

/// A multipart/mixed report: the text part, then one more part with `part_headers` (CRLF
/// separated, no trailing line end) and `part_body`.
fn with_part(part_headers: &str, part_body: &str) -> Vec<u8> {
    let body = format!(
        "--AT\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{REPORT_BODY}\r\n\
         --AT\r\n{part_headers}\r\n\r\n{part_body}\r\n--AT--\r\n"
    );
    report_with(&["Content-Type: multipart/mixed; boundary=\"AT\""], &body)
}

/// The decoded Subject of an outgoing message.
fn subject_of(row: &OutRow) -> String {
    let fields = headers(&row.kind, &row.body);
    decode_2047(header(&fields, "Subject").unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Cases.

#[test]
fn truncated_mime_is_recorded() {
    let p = pipeline();
    let head = "From: Ann <ann@example.com>\r\nTo: security@example.org\r\n\
                Subject: Tomcat connector crash\r\nMessage-ID: <trunc@example.com>\r\n\
                MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\n";
    let text_part = format!("--XYZ\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{REPORT_BODY}\r\n");
    let cut_in_attachment = format!(
        "{head}{text_part}--XYZ\r\nContent-Type: application/octet-stream; name=\"poc.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldY\r\nQUJDRE"
    );
    let run1 = run(&p, "cut inside a base64 attachment", cut_in_attachment.as_bytes());
    // The complete text part before the cut is still read.
    assert_eq!(run1.rec.verdict.verdict, Kind::Report, "{:?}", run1.rec.verdict);
    let others = [
        (
            "cut in part headers",
            format!("{head}{text_part}--XYZ\r\nContent-Type: text/pl"),
        ),
        (
            "cut in the first part",
            format!("{head}--XYZ\r\nContent-Type: text/plain\r\n\r\nTomcat crash: an unauthenticated att"),
        ),
        ("boundary declared, never used", format!("{head}{REPORT_BODY}")),
        ("cut right after the first boundary", format!("{head}--XYZ")),
        ("nothing after the header block", head.to_string()),
        (
            "cut inside the header block",
            "From: Ann <ann@example.com>\r\nSubject: Tomcat\r\nContent-Type: multipart/mixed; bound".to_string(),
        ),
        (
            "cut mid-quoted-printable",
            format!(
                "{head}--XYZ\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nTomcat =E2=80="
            ),
        ),
    ];
    each(others.map(|(l, raw)| (l.to_string(), raw)), |label, raw| {
        run(&p, label, raw.as_bytes());
    });
}

#[test]
fn ten_thousand_parts_are_recorded() {
    let p = pipeline();
    let mut body = format!("--P\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{REPORT_BODY}\r\n");
    for i in 1..10_000 {
        body.push_str(&format!(
            "--P\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"part{i}.txt\"\r\n\r\npart {i}\r\n"
        ));
    }
    body.push_str("--P--\r\n");
    let raw = report_with(&["Content-Type: multipart/mixed; boundary=\"P\""], &body);
    let run = run(&p, "10,000 parts", &raw);
    assert!(!run.out.is_empty(), "a report with parts queues mail");
}

#[test]
fn multipart_nested_2000_levels_is_recorded() {
    let p = pipeline();
    let depth = 2000;
    let mut body = String::new();
    for i in 0..depth - 1 {
        body.push_str(&format!(
            "--b{i}\r\nContent-Type: multipart/mixed; boundary=\"b{}\"\r\n\r\n",
            i + 1
        ));
    }
    body.push_str(&format!(
        "--b{}\r\nContent-Type: text/plain\r\n\r\n{REPORT_BODY}\r\n",
        depth - 1
    ));
    for i in (0..depth).rev() {
        body.push_str(&format!("--b{i}--\r\n"));
    }
    let raw = report_with(&["Content-Type: multipart/mixed; boundary=\"b0\""], &body);
    run(&p, "multipart nested 2000 deep", &raw);
}

#[test]
fn message_rfc822_nested_2000_levels_is_recorded() {
    let p = pipeline();
    let mut body = String::new();
    for i in 0..2000 {
        body.push_str(&format!(
            "From: level{i}@example.com\r\nSubject: level {i}\r\nContent-Type: message/rfc822\r\n\r\n"
        ));
    }
    body.push_str("From: inner@example.com\r\nSubject: inner\r\n\r\n");
    body.push_str(REPORT_BODY);
    let raw = report_with(&["Content-Type: message/rfc822"], &body);
    run(&p, "message/rfc822 nested 2000 deep", &raw);
}

#[test]
fn subject_encoded_words_cannot_inject_headers() {
    let p = pipeline();
    let subjects = [
        format!("=?utf-8?b?{}?=", base64(b"hi\r\nBcc: victim@example.net")),
        "=?utf-8?q?hi=0D=0ABcc:_victim@example.net?=".to_string(),
        "=?utf-8?q?hi=0ABcc:_victim@example.net=0A=0AX-Injected:_1?=".to_string(),
        "=?utf-8?q?Tomcat_report=0D=0A?= =?utf-8?q?X-Injected:_yes?=".to_string(),
        "=?iso-8859-1?q?hi=0D=0ABcc:_victim@example.net?=".to_string(),
        format!(
            "=?utf-8?b?{}?=",
            base64(b"x\r\n\r\nBcc: victim@example.net\r\nX-Injected: after a blank line")
        ),
        "=?utf-8?q?NUL=00BEL=07ESC=1B[31mDEL=7FNEL=C2=85end?=".to_string(),
        "=?utf-8?q?LS=E2=80=A8Bcc:_victim@example.net=E2=80=A9PS?=".to_string(),
        "=?utf-8?q?a=0D=0A?= ".repeat(400),
        format!("=?utf-8?b?{}?=", base64("x".repeat(3000).as_bytes())),
    ];
    let cases = subjects.iter().enumerate().flat_map(|(i, s)| {
        [("report", REPORT_BODY), ("question", QUESTION_BODY)]
            .map(|(kind, body)| (format!("subject #{i} ({kind})"), (s.clone(), body)))
    });
    each(cases, |label, (s, body)| {
        let raw = report_with(&[&format!("Subject: {s}")], body);
        let run = run(&p, label, &raw);
        assert!(!run.out.is_empty(), "{label}: nothing queued, nothing checked");
        assert_no_injected_lines(label, &run);
    });
    // The text itself survives, on one line: sanitised, not dropped.
    let raw = report_with(&["Subject: =?utf-8?q?hi=0D=0ABcc:_victim@example.net?="], REPORT_BODY);
    let kept = run(&p, "subject text kept", &raw);
    let ack = kept.out.iter().find(|r| r.kind == "ack").expect("ack queued");
    let subject = subject_of(ack);
    assert!(
        subject.contains("hi") && subject.contains("victim@example.net"),
        "{subject:?}"
    );
    // Non-ASCII text goes out as encoded words; the decoder used by these checks reads it
    // back (so the control-character check above also sees through encoded words).
    let text = "Überlauf im Connector — 漏洞 — переполнение";
    let raw = report_with(
        &[&format!("Subject: =?utf-8?b?{}?=", base64(text.as_bytes()))],
        REPORT_BODY,
    );
    let non_ascii = run(&p, "non-ASCII subject", &raw);
    let ack = non_ascii.out.iter().find(|r| r.kind == "ack").expect("ack queued");
    let fields = headers("non-ASCII subject", &ack.body);
    let encoded = header(&fields, "Subject").unwrap_or_default();
    assert!(encoded.contains("=?"), "sent as encoded words: {encoded:?}");
    assert!(subject_of(ack).contains(text), "{:?}", subject_of(ack));
}

#[test]
fn from_display_name_cannot_inject_headers_or_redirect_the_reply() {
    let p = pipeline();
    let froms = [
        "=?utf-8?q?Eve=0D=0ABcc:_victim@example.net?= <eve@example.com>".to_string(),
        "\"Eve\r\n Bcc: victim@example.net\" <eve@example.com>".to_string(),
        format!(
            "=?utf-8?b?{}?= <eve@example.com>",
            base64(b"Eve\" <victim@example.net>,\r\nX-Injected: 1")
        ),
        "\"Mallory <victim@example.net>\" <eve@example.com>".to_string(),
        "\"victim@example.net\" <eve@example.com>".to_string(),
        "eve@example.com (=?utf-8?q?comment=0D=0ABcc:_victim@example.net?=)".to_string(),
        "=?utf-8?q?=E2=80=AEevE?= <eve@example.com>".to_string(),
        format!("\"{}\" <eve@example.com>", "N".repeat(5000)),
    ];
    let cases = froms.iter().enumerate().map(|(i, f)| (format!("From #{i}"), f));
    each(cases, |label, from| {
        let raw = report_with(&[&format!("From: {from}")], REPORT_BODY);
        let run = run(&p, label, &raw);
        assert_eq!(
            run.auto_recipients(),
            vec!["eve@example.com".to_string()],
            "{label}: the ack goes to the address, never to a name"
        );
        assert_no_injected_lines(label, &run);
    });
}

#[test]
fn message_ids_cannot_inject_headers() {
    let p = pipeline();
    let long_id = format!("Message-ID: <{}@example.com>", "x".repeat(5000));
    let long_ref = format!("References: <{}@x.example>", "r".repeat(5000));
    let many_refs = format!(
        "References: {}",
        (0..1000)
            .map(|i| format!("<ref{i}@example.com>"))
            .collect::<Vec<_>>()
            .join("\r\n ")
    );
    let cases: Vec<Vec<&str>> = vec![
        vec!["Message-ID: <a@b>\r\n Bcc: victim@example.net"],
        vec!["Message-ID: <a@b>\r\n\tX-Injected: 1"],
        vec!["Message-ID: <x@y>\r\n Bcc: victim@example.net <z@w>"],
        vec!["Message-ID: <id with spaces@example.com>"],
        vec!["Message-ID: <\"quoted id\"@example.com>"],
        vec!["Message-ID: <<nested>@example.com>>"],
        vec!["Message-ID: <a@b> <c@d>"],
        vec!["Message-ID: <@>"],
        vec!["Message-ID: <>"],
        vec!["Message-ID: <a@b@c>"],
        vec!["Message-ID: <mid\u{202E}@example.com>"],
        vec!["Message-ID: =?utf-8?q?=0D=0ABcc:_victim@example.net?="],
        vec!["Message-ID: <=?utf-8?q?=0D=0AX-Injected:_1?=@example.com>"],
        vec![&long_id],
        vec![
            "Message-ID: <a@b>",
            "In-Reply-To: <p@example.com>\r\n Bcc: victim@example.net",
        ],
        vec![
            "Message-ID: <a@b>",
            "In-Reply-To: <a@b>, <c@d>; \"junk\" <e@f> (comment) X-Injected: 1",
        ],
        vec![
            "Message-ID: <a@b>",
            "In-Reply-To: <=?utf-8?q?a=0D=0ABcc:_v@example.net?=@example.com>",
        ],
        vec![
            "Message-ID: <mid@example.com>",
            "References: <r1@example.com> <r2 with space@example.com> <r3@example.com>\r\n X-Injected: yes <r4@example.com>",
        ],
        vec!["Message-ID: <mid@example.com>", &many_refs],
        vec!["Message-ID: <mid@example.com>", &long_ref],
        vec![
            "Message-ID: <mid@example.com>",
            "References: <a@b>\r\n\r\nthe header block ended early; Bcc: victim@example.net",
        ],
    ];
    let cases = cases.into_iter().enumerate().map(|(i, h)| {
        let last: String = h.last().map(|s| s.chars().take(80).collect()).unwrap_or_default();
        (format!("ids #{i} {last:?}"), h)
    });
    each(cases, |label, headers| {
        let raw = report_with(&headers, REPORT_BODY);
        let run = run(&p, label, &raw);
        assert!(!run.out.is_empty(), "{label}: nothing queued, nothing checked");
        assert_no_injected_lines(label, &run);
    });
}

#[test]
fn attachment_file_names_cannot_inject_headers() {
    let p = pipeline();
    let long_name = format!(
        "Content-Type: text/plain\r\nContent-Disposition: attachment; filename=\"{}.txt\"",
        "A".repeat(5000)
    );
    let mime_break = format!(
        "Content-Type: text/plain\r\nContent-Disposition: attachment; filename=\"=?utf-8?b?{}?=\"",
        base64(b"x\r\n--AT\r\nContent-Type: text/html\r\nX-Injected: 1\r\n\r\n<h1>x")
    );
    let parts = [
        "Content-Type: text/plain\r\nContent-Disposition: attachment; filename*=utf-8''%0D%0ABcc%3A%20x%40example.net".to_string(),
        "Content-Type: text/plain\r\nContent-Disposition: attachment; filename=\"=?utf-8?q?poc=0D=0AX-Injected:_1.txt?=\"".to_string(),
        "Content-Type: text/plain; name*0*=utf-8''%0D%0A; name*1=\"Bcc: x@example.net\"\r\nContent-Disposition: attachment".to_string(),
        "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=utf-8''poc%E2%80%AEtxt.exe".to_string(),
        "Content-Type: text/plain\r\nContent-Disposition: attachment; filename*=utf-8''%00%07%1B%7F.txt".to_string(),
        long_name,
        mime_break,
    ];
    let cases = parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| (format!("attachment name #{i}"), p));
    each(cases, |label, part| {
        let raw = with_part(&part, "print('poc')");
        let run = run(&p, label, &raw);
        assert!(
            run.out.iter().any(|r| r.kind == "forward"),
            "{label}: the forward (which lists attachment names) was not queued: {:?}",
            run.rec.verdict
        );
        assert_no_injected_lines(label, &run);
    });
}

#[test]
fn bidi_overrides_do_not_reach_outgoing_subjects() {
    let p = pipeline();
    let spoof = "Tomcat \u{202E}txt.exe\u{202C} report \u{2066}x\u{2069}";
    let subjects = [
        format!("Subject: =?utf-8?b?{}?=", base64(spoof.as_bytes())),
        format!("Subject: {spoof}"),
    ];
    let cases = subjects.iter().enumerate().flat_map(|(i, s)| {
        [("report", REPORT_BODY), ("question", QUESTION_BODY)]
            .map(|(kind, body)| (format!("bidi #{i} ({kind})"), (s.clone(), body)))
    });
    each(cases, |label, (subject, body)| {
        let run = run(&p, label, &report_with(&[&subject], body));
        assert!(!run.out.is_empty(), "{label}: nothing queued");
        for row in &run.out {
            // `run` checked there is no bidi character left; the text itself must remain.
            let s = subject_of(row);
            assert!(s.contains("txt.exe"), "{label}: subject text lost: {s:?}");
        }
    });
}

#[test]
fn thirty_megabyte_message_is_rejected_as_too_large() {
    let p = pipeline();
    let line = format!("{}\r\n", "QUFB".repeat(19));
    let size = 30 * 1024 * 1024;
    let mut body = String::with_capacity(size + 4096);
    body.push_str(&format!(
        "--BIG\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{REPORT_BODY}\r\n\
         --BIG\r\nContent-Type: application/octet-stream; name=\"heap.dump\"\r\n\
         Content-Disposition: attachment; filename=\"heap.dump\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    ));
    while body.len() < size {
        body.push_str(&line);
    }
    body.push_str("--BIG--\r\n");
    let raw = report_with(&["Content-Type: multipart/mixed; boundary=\"BIG\""], &body);
    let limit = p.config().triage.max_message_size;
    assert!(raw.len() > limit, "the message must exceed the limit");
    let run = run(&p, "30 MB", &raw);
    assert_eq!(run.rec.verdict.verdict, Kind::RejectFormat);
    assert_eq!(run.rec.verdict.reason, Some(Reason::TooLarge));
    assert_eq!(run.rec.queued, vec![ReplyKind::RejectTooLarge]);
    let reply = String::from_utf8_lossy(&run.out.first().expect("reply queued").body).into_owned();
    assert!(
        reply.contains(&raw.len().to_string()),
        "the reply states the size of the message"
    );
}

#[test]
fn empty_and_blank_messages_are_recorded() {
    let p = pipeline();
    let cases: [(&str, &[u8]); 6] = [
        ("empty", b""),
        ("three LFs", b"\n\n\n"),
        ("three CRLFs", b"\r\n\r\n\r\n"),
        ("bare CRs", b"\r\r\r"),
        ("spaces", b"   \t  "),
        ("one NUL", b"\0"),
    ];
    each(cases.map(|(l, raw)| (l.to_string(), raw)), |label, raw| {
        run(&p, label, raw);
    });
}

#[test]
fn header_only_messages_without_a_body_separator_are_recorded() {
    let p = pipeline();
    let cases = [
        "From: Ann <ann@example.com>\r\nTo: security@example.org\r\nSubject: Tomcat crash\r\nMessage-ID: <hdr1@example.com>",
        "From: Ann <ann@example.com>\r\nTo: security@example.org\r\nSubject: Tomcat crash\r\nMessage-ID: <hdr2@example.com>\r\n",
        "From: Ann <ann@example.com>\nSubject: Tomcat crash\nMessage-ID: <hdr3@example.com>\n",
        "Subject: =?utf-8?q?hi=0D=0ABcc:_victim@example.net?=\r\nFrom: ann@example.com",
    ];
    let cases = cases
        .iter()
        .enumerate()
        .map(|(i, raw)| (format!("header only #{i}"), raw));
    each(cases, |label, raw| {
        run(&p, label, raw.as_bytes());
    });
}

#[test]
fn random_bytes_are_recorded() {
    let p = pipeline();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let samples: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| {
            let len = rng.below(4097);
            (format!("random sample #{i} ({len} bytes)"), rng.bytes(len))
        })
        .collect();
    each(samples, |label, raw| {
        run(&p, label, &raw);
    });
}

#[test]
fn mutated_reports_are_recorded() {
    let p = pipeline();
    let mut rng = XorShift(0x0DDB_1A5E_5BAD_5EED);
    let base = with_part(
        "Content-Type: text/x-python; name=\"poc.py\"\r\nContent-Disposition: attachment; filename=\"poc.py\"",
        "import socket\r\nprint('poc')",
    );
    let mut samples = Vec::new();
    for i in 0..200 {
        let mut raw = base.clone();
        for _ in 0..1 + rng.below(24) {
            let at = rng.below(raw.len());
            let byte = match rng.below(4) {
                0 => b'\r',
                1 => b'\n',
                2 => b':',
                _ => rng.next_u64() as u8,
            };
            if let Some(b) = raw.get_mut(at) {
                *b = byte;
            }
        }
        if rng.below(4) == 0 {
            raw.truncate(rng.below(raw.len()));
        }
        samples.push((format!("mutated report #{i}"), raw));
    }
    each(samples, |label, raw| {
        run(&p, label, &raw);
    });
}

#[test]
fn garbage_return_path_never_gets_a_reply_to_garbage() {
    let p = pipeline();
    let mut rng = XorShift(0x00C0_FFEE);
    let printable: String = (0..10_240).map(|_| char::from(0x20 + rng.below(95) as u8)).collect();
    let cases = [
        format!("Return-Path: <{printable}>"),
        format!("Return-Path: {printable}"),
        format!("Return-Path: <{}@example.com>", "a".repeat(10_240)),
        format!("Return-Path: <x@{}com>", "a.".repeat(5_120)),
        format!("Return-Path: <x@{}.com>", "b".repeat(10_240)),
        "Return-Path: <x@example.com>\r\n Bcc: victim@example.net".to_string(),
        "Return-Path: <victim@example.net>, <other@example.net>".to_string(),
        "Return-Path: <x@example.com> X-Injected: 1".to_string(),
    ];
    let cases = cases
        .into_iter()
        .enumerate()
        .map(|(i, rp)| (format!("Return-Path #{i}"), rp));
    each(cases, |label, rp| {
        let run = run(&p, label, &report_with(&[&rp], REPORT_BODY));
        assert_eq!(run.rec.verdict.verdict, Kind::Report, "{label}");
        assert_no_injected_lines(label, &run);
    });
}

#[test]
fn invalid_from_addresses_never_get_a_reply_to_garbage() {
    let p = pipeline();
    let froms: [&[u8]; 20] = [
        b"<>",
        b"@",
        b"a@b@c",
        b"\"x\"@[1.2.3.4]",
        b"<@>",
        b"a@",
        b"@example.com",
        b"\"\"@example.com",
        b"a..b@example.com",
        b".a@example.com",
        b"a@-example-.com",
        b"a@[999.1.1.1]",
        b"a@b,c@d",
        b"<a@b> <c@d>",
        b"undisclosed-recipients:;",
        b"a@exa mple.com",
        b"\"a\r\n b\"@example.com",
        b"=?utf-8?q?a=0D=0A@example.com?=",
        // Not UTF-8: what is left after decoding is not the sender's address.
        b"ig\xefr@example.com",
        b"Igor <ig\xf0\x28\x8c\x28r@example.com>",
    ];
    let cases = froms
        .iter()
        .enumerate()
        .map(|(i, from)| (format!("From {:?} (#{i})", String::from_utf8_lossy(from)), *from));
    each(cases, |label, from| {
        let mut raw = b"From: ".to_vec();
        raw.extend_from_slice(from);
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&mail(&header_lines(BASE, &["From:"]), REPORT_BODY));
        let run = run(&p, label, &raw);
        // `run` checked the ack went to a plausible address or was withheld; a report it
        // must still be.
        assert_eq!(run.rec.verdict.verdict, Kind::Report, "{label}");
    });
}

#[test]
fn garbage_reply_to_never_reaches_the_forward() {
    let p = pipeline();
    let reply_tos: [&[u8]; 7] = [
        b"victim@example.net\r\n Bcc: other@example.net",
        b"a@b@c",
        b"<>",
        b"=?utf-8?q?x=0D=0ABcc:_victim@example.net?= <eve@example.com>",
        b"eve@example.com, X-Injected: 1",
        b"ig\xefr@example.com",
        b"\"x\"@[1.2.3.4]",
    ];
    let cases = reply_tos
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("Reply-To {:?} (#{i})", String::from_utf8_lossy(r)), *r));
    each(cases, |label, reply_to| {
        let mut raw = b"Reply-To: ".to_vec();
        raw.extend_from_slice(reply_to);
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&mail(BASE, REPORT_BODY));
        let run = run(&p, label, &raw);
        // `run` checked the forward's Reply-To holds only plausible addresses.
        assert!(
            run.out.iter().any(|r| r.kind == "forward"),
            "{label}: no forward queued"
        );
    });
}

#[test]
fn followup_subjects_cannot_inject_headers() {
    let p = pipeline();
    let mut store = Store::open_in_memory().unwrap();
    let first = run_in(&p, &mut store, "the report", &report_with(&[], REPORT_BODY));
    let case = first.rec.case.clone().expect("the report opens a case");
    let subjects = [
        format!(
            "=?utf-8?b?{}?=",
            base64(format!("Re: [{case}]\r\nBcc: victim@example.net").as_bytes())
        ),
        format!("Re: [{case}] =?utf-8?q?more=0D=0AX-Injected:_1?="),
        format!("Re: [{case}] \u{202E}gpj.exe"),
    ];
    let cases = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("follow-up subject #{i}"), (i, s)));
    each(cases, |label, (i, subject)| {
        let mid = format!("Message-ID: <followup{i}@example.com>");
        let raw = report_with(
            &[&format!("Subject: {subject}"), &mid],
            "One more detail: it also happens over h2c.\r\n",
        );
        let run = run_in(&p, &mut store, label, &raw);
        assert_eq!(run.rec.verdict.verdict, Kind::Followup, "{label}");
        assert_eq!(run.rec.queued, vec![ReplyKind::Followup], "{label}");
        assert_no_injected_lines(label, &run);
    });
}
