//! The lines our guest (qemu-fixtures/guest) prints on its serial console, parsed in one place.
//!
//! The formats are those of qemu-fixtures/guest/README.md ("Output lines"). [`GuestLine::parse`]
//! gives `Ok(None)` for a line that is not a report (informational lines, and any line a newer
//! guest may add), and an error naming the line and the field for a report line that is malformed:
//! a known kind with a missing or non-numeric field means the console was corrupted, which a caller
//! must not mistake for a healthy guest.
//!
//! The frame metrics computed from these lines are in [`metrics`].

pub mod metrics;

use std::num::ParseIntError;

/// One report line of the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestLine {
    /// `READY ...`: every region is filled; the workload runs from now on.
    Ready,
    /// `HB <seq> <guest_ms>`: the page heartbeat.
    Heartbeat { seq: u64, guest_ms: u64 },
    /// `FR <seq> <guest_us>`: frame `seq` was rendered (frame mode) at `guest_us` on the guest's
    /// clock.
    Frame { seq: u64, guest_us: u64 },
    /// `FRAME fps=<n> fws=<n> kern=<n>@0x<hex8> fb=<n>@0x<hex8> windows=<n>`: the frame mode's
    /// configuration, sizes in KiB.
    FrameConfig {
        fps: u32,
        fws_kib: u32,
        kern_kib: u32,
        fb_kib: u32,
        windows: u32,
    },
    /// `CHECK OK <pass> <hex8>`: a pass found all it read intact.
    CheckOk { pass: u64, sum: u32 },
    /// `CHECK FAIL <pass> first=0x<hex8> bad=<n>`: a pass found bad words.
    CheckFail { pass: u64, first: u32, bad: u64 },
    /// `FAIL <region> addr=0x<hex8> got=0x<hex8> want=0x<hex8>`: one bad word.
    Fail {
        region: String,
        addr: u32,
        got: u32,
        want: u32,
    },
    /// `STAT <pass> ms=<n> ...`: the pass took `ms` on the guest's clock.
    Stat { pass: u64, ms: u64 },
    /// `INJECT <pass>` (test only): the guest corrupted its own memory before this pass.
    Inject { pass: u64 },
}

/// A report line that could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum GuestReportError {
    #[error("guest line {line:?}: no {field}")]
    Missing { line: String, field: &'static str },
    #[error("guest line {line:?}: {field} is not a number")]
    Number {
        line: String,
        field: &'static str,
        #[source]
        source: ParseIntError,
    },
    #[error("guest line {line:?}: CHECK is followed by neither OK nor FAIL")]
    CheckVerdict { line: String },
}

impl GuestLine {
    /// Parses one line (trailing whitespace allowed). `Ok(None)`: not a report line.
    pub fn parse(line: &str) -> Result<Option<GuestLine>, GuestReportError> {
        let line = line.trim();
        let mut tok = line.split_whitespace();
        let Some(kind) = tok.next() else {
            return Ok(None);
        };
        let mut p = Fields { line, tok };
        let parsed = match kind {
            "READY" => GuestLine::Ready,
            "HB" => GuestLine::Heartbeat {
                seq: p.dec("seq")?,
                guest_ms: p.dec("guest_ms")?,
            },
            "FR" => GuestLine::Frame {
                seq: p.dec("seq")?,
                guest_us: p.dec("guest_us")?,
            },
            "FRAME" => GuestLine::FrameConfig {
                fps: p.key_dec("fps")?,
                fws_kib: p.key_dec("fws")?,
                kern_kib: p.key_dec("kern")?,
                fb_kib: p.key_dec("fb")?,
                windows: p.key_dec("windows")?,
            },
            "CHECK" => match p.tok.next() {
                Some("OK") => GuestLine::CheckOk {
                    pass: p.dec("pass")?,
                    sum: p.hex("sum")?,
                },
                Some("FAIL") => {
                    let pass = p.dec("pass")?;
                    GuestLine::CheckFail {
                        pass,
                        first: p.key_hex("first")?,
                        bad: p.key_dec("bad")?,
                    }
                }
                _ => {
                    return Err(GuestReportError::CheckVerdict {
                        line: line.to_string(),
                    })
                }
            },
            "FAIL" => {
                let region = p.tok.next().ok_or_else(|| p.missing("region"))?.to_string();
                GuestLine::Fail {
                    region,
                    addr: p.key_hex("addr")?,
                    got: p.key_hex("got")?,
                    want: p.key_hex("want")?,
                }
            }
            "STAT" => GuestLine::Stat {
                pass: p.dec("pass")?,
                ms: p.key_dec("ms")?,
            },
            "INJECT" => GuestLine::Inject {
                pass: p.dec("pass")?,
            },
            _ => return Ok(None),
        };
        Ok(Some(parsed))
    }

    /// A line that says the guest's memory was found bad.
    pub fn is_failure(&self) -> bool {
        matches!(self, GuestLine::CheckFail { .. } | GuestLine::Fail { .. })
    }
}

/// The fields after the kind: positional tokens, or `key=value` anywhere on the line.
struct Fields<'a, I> {
    line: &'a str,
    tok: I,
}

impl<'a, I: Iterator<Item = &'a str>> Fields<'a, I> {
    fn missing(&self, field: &'static str) -> GuestReportError {
        GuestReportError::Missing {
            line: self.line.to_string(),
            field,
        }
    }

    fn number<T>(
        &self,
        field: &'static str,
        r: Result<T, ParseIntError>,
    ) -> Result<T, GuestReportError> {
        r.map_err(|source| GuestReportError::Number {
            line: self.line.to_string(),
            field,
            source,
        })
    }

    fn dec<T: std::str::FromStr<Err = ParseIntError>>(
        &mut self,
        field: &'static str,
    ) -> Result<T, GuestReportError> {
        let t = self.tok.next().ok_or_else(|| self.missing(field))?;
        self.number(field, t.parse())
    }

    fn hex(&mut self, field: &'static str) -> Result<u32, GuestReportError> {
        let t = self.tok.next().ok_or_else(|| self.missing(field))?;
        self.number(field, u32::from_str_radix(t, 16))
    }

    /// The value of `key=` anywhere after the kind, up to an `@` (as in `kern=256@0x00400000`).
    fn key_value(&self, key: &'static str) -> Result<&'a str, GuestReportError> {
        self.line
            .split_whitespace()
            .skip(1)
            .find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.split('@').next().unwrap_or(v))
            .ok_or_else(|| self.missing(key))
    }

    fn key_dec<T: std::str::FromStr<Err = ParseIntError>>(
        &self,
        key: &'static str,
    ) -> Result<T, GuestReportError> {
        let v = self.key_value(key)?;
        self.number(key, v.parse())
    }

    fn key_hex(&self, key: &'static str) -> Result<u32, GuestReportError> {
        let v = self.key_value(key)?;
        let digits = v.strip_prefix("0x").unwrap_or(v);
        self.number(key, u32::from_str_radix(digits, 16))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(l: &str) -> Option<GuestLine> {
        GuestLine::parse(l)
            .map_err(|e| e.to_string())
            .expect("a well-formed line")
    }

    #[test]
    fn parses_every_report_line_of_the_readme() {
        assert_eq!(
            p("READY ro=64 hot=16 cold=414 rate=40 beat=20"),
            Some(GuestLine::Ready)
        );
        assert_eq!(
            p("HB 17 3400\n"),
            Some(GuestLine::Heartbeat {
                seq: 17,
                guest_ms: 3400
            })
        );
        assert_eq!(
            p("FR 3 4687296"),
            Some(GuestLine::Frame {
                seq: 3,
                guest_us: 4_687_296
            })
        );
        assert_eq!(
            p("FRAME fps=25 fws=2048 kern=256@0x00400000 fb=256@0x00800000 windows=32"),
            Some(GuestLine::FrameConfig {
                fps: 25,
                fws_kib: 2048,
                kern_kib: 256,
                fb_kib: 256,
                windows: 32
            })
        );
        assert_eq!(
            p("CHECK OK 2 0badf00d"),
            Some(GuestLine::CheckOk {
                pass: 2,
                sum: 0x0bad_f00d
            })
        );
        let fail = p("CHECK FAIL 3 first=0x01003039 bad=4").expect("a report");
        assert_eq!(
            fail,
            GuestLine::CheckFail {
                pass: 3,
                first: 0x0100_3039,
                bad: 4
            }
        );
        assert!(fail.is_failure());
        let word = p("FAIL ro addr=0x0100c0e4 got=0x12345678 want=0x12355678").expect("a report");
        assert_eq!(
            word,
            GuestLine::Fail {
                region: "ro".into(),
                addr: 0x0100_c0e4,
                got: 0x1234_5678,
                want: 0x1235_5678
            }
        );
        assert!(word.is_failure());
        assert_eq!(
            p("STAT 4 ms=215 cold_off_mb=64 cold_mb=64 hot_pages=2000 hot_mbps=36 gens=0"),
            Some(GuestLine::Stat { pass: 4, ms: 215 })
        );
        assert_eq!(
            p("STAT 1 ms=1290 frames=32 hot_pages=13000 hot_mbps=39 gens=3"),
            Some(GuestLine::Stat { pass: 1, ms: 1290 })
        );
        assert_eq!(p("INJECT 2"), Some(GuestLine::Inject { pass: 2 }));
        assert!(!GuestLine::Ready.is_failure());
    }

    #[test]
    fn other_lines_are_not_reports() {
        for l in [
            "",
            "   ",
            "BOOT postcopy-guest v1 cmdline=\"x\"",
            "CLOCK pmtimer port=0x00000608",
            "CONFIG ro=64@0x01000000 hot=16@0x05000000",
            "FILLED ms=1800",
            "WARN unknown key foo",
            "HBX 1 2",
            "FRAMES 1",
        ] {
            assert_eq!(p(l), None, "{l:?}");
        }
    }

    #[test]
    fn a_malformed_report_line_names_the_line_and_the_field() {
        let e = GuestLine::parse("HB 12").expect_err("no guest_ms");
        assert_eq!(e.to_string(), "guest line \"HB 12\": no guest_ms");
        let e = GuestLine::parse("FR x 100").expect_err("bad seq");
        assert_eq!(
            e.to_string(),
            "guest line \"FR x 100\": seq is not a number"
        );
        assert!(
            std::error::Error::source(&e).is_some(),
            "the cause is chained"
        );
        let e = GuestLine::parse("CHECK MAYBE 1").expect_err("no verdict");
        assert_eq!(
            e.to_string(),
            "guest line \"CHECK MAYBE 1\": CHECK is followed by neither OK nor FAIL"
        );
        let e = GuestLine::parse("CHECK FAIL 3 bad=4").expect_err("no first=");
        assert_eq!(e.to_string(), "guest line \"CHECK FAIL 3 bad=4\": no first");
        let e = GuestLine::parse("STAT 1 ms=abc").expect_err("bad ms");
        assert_eq!(
            e.to_string(),
            "guest line \"STAT 1 ms=abc\": ms is not a number"
        );
        let e = GuestLine::parse("FAIL").expect_err("no region");
        assert_eq!(e.to_string(), "guest line \"FAIL\": no region");
    }
}
