use super::ProtocolError;

/// The longest line we accept from a monitor. QEMU's largest replies (query-qmp-schema) are about
/// 200 KiB; anything far beyond that is a broken or hostile peer.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// Splits a byte stream into `\n`-terminated lines (QMP frames one JSON object per line).
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    max: usize,
    /// How much of `buf` is known to hold no newline: a line that arrives in many pieces is
    /// searched once, not from its start on every piece.
    scanned: usize,
}

impl Framer {
    pub fn new() -> Self {
        Self::with_limit(MAX_LINE)
    }

    pub fn with_limit(max: usize) -> Self {
        Framer {
            buf: Vec::new(),
            max,
            scanned: 0,
        }
    }

    /// Feeds bytes; returns every complete line (without the newline, with `\r` stripped).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, ProtocolError> {
        self.buf.extend_from_slice(bytes);
        let mut lines = Vec::new();
        let mut start = 0;
        let mut from = self.scanned;
        while let Some(off) = self.buf[from..].iter().position(|&b| b == b'\n') {
            let end = from + off;
            let mut line = &self.buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if line.len() > self.max {
                return Err(ProtocolError::LineTooLong { max: self.max });
            }
            if !line.iter().all(|b| b.is_ascii_whitespace()) {
                lines.push(String::from_utf8_lossy(line).into_owned());
            }
            start = end + 1;
            from = start;
        }
        self.buf.drain(..start);
        self.scanned = self.buf.len();
        if self.buf.len() > self.max {
            return Err(ProtocolError::LineTooLong { max: self.max });
        }
        Ok(lines)
    }

    /// True when a partial line is buffered (EOF now would cut a message).
    pub fn has_partial(&self) -> bool {
        self.buf.iter().any(|b| !b.is_ascii_whitespace())
    }
}
