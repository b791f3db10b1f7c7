//! The text log format, with a short path for access-log lines.
//!
//! tracing-subscriber's default text format writes every field through the
//! generic `fmt` machinery and its (here colourless) style wrappers: about
//! 17 000 instructions for one access-log line, which was 40 % of what a
//! proxied request cost with the access log on (its default).
//! [`AccessLineFormat`] writes lines of [`ACCESS_LOG_TARGET`] itself, byte
//! for byte as the default format would (the tests below compare the two),
//! and hands every other event to that default format.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

use super::ACCESS_LOG_TARGET;

/// The default text event format (`tracing_subscriber::fmt::format()`),
/// writing access-log lines without the generic field formatting: their
/// timestamp by `T` (by default the same RFC 3339 form with microseconds,
/// through humantime), everything else by the default format with
/// timestamps by `I`. Lines with colours, inside a span, or of other
/// targets go through the default format unchanged.
#[derive(Debug)]
pub struct AccessLineFormat<T = Rfc3339Micros, I = SystemTime> {
    timer: T,
    inner: format::Format<format::Full, I>,
}

impl Default for AccessLineFormat {
    fn default() -> Self {
        AccessLineFormat {
            timer: Rfc3339Micros,
            inner: format::format(),
        }
    }
}

impl<T: FormatTime + Clone> AccessLineFormat<T, T> {
    /// The format with every timestamp by `timer`, as
    /// `tracing_subscriber::fmt::format().with_timer(timer)`.
    pub fn with_timer(timer: T) -> Self {
        AccessLineFormat {
            inner: format::format().with_timer(timer.clone()),
            timer,
        }
    }
}

/// UTC time as tracing-subscriber's default `SystemTime` timer writes it
/// (`2026-12-03T12:00:00.000001Z`), formatted by humantime on the stack.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rfc3339Micros;

impl FormatTime for Rfc3339Micros {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        write!(
            w,
            "{}",
            humantime::format_rfc3339_micros(std::time::SystemTime::now())
        )
    }
}

impl<S, N, T, I> FormatEvent<S, N> for AccessLineFormat<T, I>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    T: FormatTime,
    I: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if meta.target() != ACCESS_LOG_TARGET
            || *meta.level() != Level::INFO
            || writer.has_ansi_escapes()
            || ctx.event_scope().is_some()
        {
            return self.inner.format_event(ctx, writer, event);
        }
        // As `Format<Full>` writes it: time, level padded to five, target.
        if self.timer.format_time(&mut writer).is_err() {
            writer.write_str("<unknown time>")?;
        }
        // The rest in one buffer, written once.
        let mut fields = Fields {
            line: String::with_capacity(256),
            first: true,
        };
        fields.line.push_str("  INFO ");
        fields.line.push_str(ACCESS_LOG_TARGET);
        fields.line.push_str(": ");
        event.record(&mut fields);
        fields.line.push('\n');
        writer.write_str(&fields.line)
    }
}

/// Writes fields as tracing-subscriber's default visitor does without
/// colours: the message first as it is, then ` name=value` with the value's
/// `Debug` form (a string quoted and escaped). Error values (`record_error`)
/// would be written without the default visitor's list of sources: the
/// access line has none.
struct Fields {
    line: String,
    first: bool,
}

impl Fields {
    /// The separator and `name=`; false when the field is not written.
    fn start(&mut self, field: &Field) -> bool {
        let name = field.name();
        if name.starts_with("log.") {
            return false;
        }
        if self.first {
            self.first = false;
        } else {
            self.line.push(' ');
        }
        if name != "message" {
            self.line.push_str(name.strip_prefix("r#").unwrap_or(name));
            self.line.push('=');
        }
        true
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.start(field) {
            return;
        }
        if field.name() == "message" {
            self.line.push_str(value);
        } else if value.bytes().all(plain_in_debug) {
            // What `{:?}` writes for a string with nothing to escape.
            self.line.push('"');
            self.line.push_str(value);
            self.line.push('"');
        } else {
            let _ = write!(self.line, "{value:?}");
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.start(field) {
            let _ = write!(self.line, "{value}");
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.start(field) {
            let _ = write!(self.line, "{value}");
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.start(field) {
            write_f64(&mut self.line, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.start(field) {
            let _ = write!(self.line, "{value:?}");
        }
    }
}

/// `{:?}` of `value`: with integer arithmetic when it is a whole number of
/// thousandths below 10^12 (the access line's durations, in milliseconds
/// to the microsecond), where the shortest form that reads back as the
/// same `f64` is those digits, trailing zeros dropped (at most 15
/// significant digits, which no other decimal as short shares a double
/// with); else by `fmt`.
fn write_f64(line: &mut String, value: f64) {
    let thousandths = (value * 1000.0).round();
    if thousandths.abs() < 1e15 && thousandths / 1000.0 == value {
        // Exact: |thousandths| < 10^15 < 2^63.
        #[allow(clippy::cast_possible_truncation)]
        let t = thousandths as i64;
        if value.is_sign_negative() {
            line.push('-');
        }
        let t = t.unsigned_abs();
        let _ = write!(line, "{}.", t / 1000);
        let mut frac = t % 1000;
        if frac == 0 {
            line.push('0');
            return;
        }
        let mut digits = 3;
        while frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        let _ = write!(line, "{frac:0digits$}");
        return;
    }
    let _ = write!(line, "{value:?}");
}

/// Whether `{:?}` writes this byte of a string as it is: printable ASCII
/// other than `"` and `\` (anything else may be escaped).
fn plain_in_debug(b: u8) -> bool {
    (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\'
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A fixed time, so that both formats write the same line.
    #[derive(Clone)]
    struct Fixed;

    impl FormatTime for Fixed {
        fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
            w.write_str("2026-12-03T12:00:00.000001Z")
        }
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn emit(path: &str, sub: &str, upstream_ms: f64) {
        tracing::info!(
            target: ACCESS_LOG_TARGET,
            method = %http::Method::GET,
            path,
            status = 200u16,
            route = "protected",
            auth = "session",
            sub = ?sub,
            duration_ms = 0.612_345_f64,
            upstream_ms,
            request_id = "3f9c0a7d1e22b640000000000000002a",
            trace_id = "-",
            "request"
        );
        tracing::info!(target: "oidc_gateway::other", answer = 42u64, "not an access line");
    }

    /// What `emit` writes with the default format, or with ours.
    fn lines(ours: bool, path: &str, sub: &str, upstream_ms: f64) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || out.clone());
        if ours {
            let s = builder
                .event_format(AccessLineFormat::with_timer(Fixed))
                .finish();
            tracing::subscriber::with_default(s, || emit(path, sub, upstream_ms));
        } else {
            let s = builder.with_timer(Fixed).finish();
            tracing::subscriber::with_default(s, || emit(path, sub, upstream_ms));
        }
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn access_line_is_the_default_formats_line() {
        let ours = lines(true, "/private", "alice", 0.42);
        assert_eq!(ours, lines(false, "/private", "alice", 0.42));
        assert!(
            ours.starts_with(
                "2026-12-03T12:00:00.000001Z  INFO oidc_gateway::access: request method=GET path=\"/private\" status=200 "
            ),
            "{ours}"
        );
        assert!(ours.contains("upstream_ms=0.42 "), "{ours}");
        assert!(
            ours.contains("oidc_gateway::other: not an access line answer=42\n"),
            "{ours}"
        );
    }

    /// One time for the short path, another for the inner format.
    #[derive(Clone)]
    enum Either {
        Short,
        Inner,
    }

    impl FormatTime for Either {
        fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
            w.write_str(match self {
                Either::Short => "SHORT",
                Either::Inner => "INNER",
            })
        }
    }

    #[test]
    fn access_lines_take_the_short_path_and_others_the_default() {
        let buf = Buf::default();
        let out = buf.clone();
        let format = AccessLineFormat {
            timer: Either::Short,
            inner: format::format().with_timer(Either::Inner),
        };
        let s = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || out.clone())
            .event_format(format)
            .finish();
        tracing::subscriber::with_default(s, || emit("/x", "bob", 1.5));
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with("SHORT  INFO oidc_gateway::access: request "),
            "{text}"
        );
        assert!(
            lines[1].starts_with("INNER  INFO oidc_gateway::other: "),
            "{text}"
        );
    }

    fn f64_text(v: f64) -> String {
        let mut s = String::new();
        write_f64(&mut s, v);
        s
    }

    #[test]
    fn access_line_f64_is_debug() {
        for v in [
            0.0,
            -0.0,
            -1.0,
            0.001,
            0.612,
            12_345.678,
            1e-7,
            0.1 + 0.2,
            1e12,
            999_999_999_999.999,
            f64::NAN,
            f64::INFINITY,
        ] {
            assert_eq!(f64_text(v), format!("{v:?}"), "{v}");
        }
    }

    proptest::proptest! {
        #[test]
        fn access_line_thousandths_are_debug(k in -1_000_000_000_000_000i64..1_000_000_000_000_000) {
            #[allow(clippy::cast_precision_loss)]
            let v = k as f64 / 1000.0;
            proptest::prop_assert_eq!(f64_text(v), format!("{v:?}"));
        }

        #[test]
        fn access_line_any_f64_is_debug(v in proptest::num::f64::ANY) {
            proptest::prop_assert_eq!(f64_text(v), format!("{v:?}"));
        }
    }

    #[test]
    fn access_line_time_is_the_default_timers() {
        let text = |timer: &dyn FormatTime| {
            let mut s = String::new();
            timer.format_time(&mut Writer::new(&mut s)).unwrap();
            s
        };
        // Same second (retried across a second's edge): same text but the
        // microseconds.
        for _ in 0..3 {
            let (ours, theirs) = (text(&Rfc3339Micros), text(&SystemTime));
            assert_eq!(ours.len(), "2026-12-03T12:00:00.000001Z".len(), "{ours}");
            assert_eq!(theirs.len(), ours.len(), "{theirs}");
            if ours[..19] == theirs[..19] {
                assert!(ours.ends_with('Z') && ours.as_bytes()[19] == b'.', "{ours}");
                return;
            }
        }
        panic!("three seconds' edges in a row");
    }

    #[test]
    fn access_line_escapes_as_the_default_format() {
        for (path, sub) in [
            ("/a\"b\\c", "al\"ice"),
            ("/caf\u{e9}/\u{1b}[31m", "\u{7f}\t\n\r\0"),
            ("", "-"),
        ] {
            for upstream_ms in [-1.0, 12_345.678, 1e-7, 0.0] {
                assert_eq!(
                    lines(true, path, sub, upstream_ms),
                    lines(false, path, sub, upstream_ms),
                    "{path:?} {sub:?} {upstream_ms}"
                );
            }
        }
    }

    #[test]
    fn access_line_inside_a_span_goes_to_the_default_format() {
        let run = |ours: bool| {
            let buf = Buf::default();
            let out = buf.clone();
            let builder = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(move || out.clone());
            let go = || {
                let span = tracing::info_span!("conn", peer = "127.0.0.1");
                let _in = span.enter();
                emit("/x", "bob", 1.5);
            };
            if ours {
                let s = builder
                    .event_format(AccessLineFormat::with_timer(Fixed))
                    .finish();
                tracing::subscriber::with_default(s, go);
            } else {
                let s = builder.with_timer(Fixed).finish();
                tracing::subscriber::with_default(s, go);
            }
            let bytes = buf.0.lock().unwrap().clone();
            String::from_utf8(bytes).unwrap()
        };
        let ours = run(true);
        assert_eq!(ours, run(false));
        assert!(
            ours.contains("conn{peer=\"127.0.0.1\"}: oidc_gateway::access: request"),
            "{ours}"
        );
    }
}
