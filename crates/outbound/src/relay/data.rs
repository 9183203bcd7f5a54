//! Reading a message: the DATA decoder (dot-unstuffing and the end of data) and the checks
//! BDAT chunks get, a chunk at a time, so no message is held whole.
//!
//! **SMTP smuggling.** Only `<CR><LF>.<CR><LF>` ends DATA (RFC 5321 section 4.1.1.4), with
//! the first `<CR><LF>` possibly the one that ended the DATA command. `<LF>.<LF>`,
//! `<CR>.<CR>`, `<LF>.<CR><LF>`, `<CR><LF>.<LF>` and every other shape made with a bare LF or
//! bare CR are message text, so whatever follows them stays inside the message, and the
//! message is then refused (`550 5.6.0`) because it holds a bare LF or CR: a message that
//! another server could have split differently is never accepted (what Postfix's
//! `smtpd_forbid_bare_newline = reject` does). Commands that follow the real end of data are
//! read as commands, as PIPELINING means them to be.

use memchr::memchr2;

/// What is wrong with a message, found while reading it; the relay refuses it after its end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flaws {
    /// A CR not followed by LF.
    pub bare_cr: bool,
    /// An LF not preceded by CR.
    pub bare_lf: bool,
    /// A line longer than the limit (without its CRLF).
    pub long_line: bool,
}

impl Flaws {
    pub(crate) fn bare_newline(&self) -> bool {
        self.bare_cr || self.bare_lf
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line: after a CRLF, or at the start of the data.
    LineStart,
    /// A line that started with `.`.
    Dot,
    /// A line that started with `.` then CR.
    DotCr,
    /// Inside a line.
    Text,
    /// Inside a line, just after a CR.
    Cr,
    /// The end of data was read.
    Ended,
}

/// Decodes what follows a `354`: removes dot-stuffing, finds the end of data, notes flaws.
pub(crate) struct DataDecoder {
    state: State,
    line_len: usize,
    max_line: usize,
    flaws: Flaws,
}

impl DataDecoder {
    pub(crate) fn new(max_line: usize) -> Self {
        DataDecoder {
            state: State::LineStart,
            line_len: 0,
            max_line,
            flaws: Flaws::default(),
        }
    }

    pub(crate) fn flaws(&self) -> Flaws {
        self.flaws
    }

    /// Decodes `input`, appending the message's bytes to `out`. Returns how many bytes of
    /// `input` belong to the data and whether the end of data was among them; bytes after the
    /// end are the next commands.
    pub(crate) fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Ended => return (i, true),
                State::Text => {
                    let rest = &input[i..];
                    let Some(p) = memchr2(b'\r', b'\n', rest) else {
                        self.text(rest, out);
                        return (input.len(), false);
                    };
                    self.text(&rest[..p], out);
                    i += p + 1;
                    if rest[p] == b'\r' {
                        self.state = State::Cr;
                    } else {
                        self.flaws.bare_lf = true;
                        self.text(b"\n", out);
                    }
                }
                State::LineStart if b == b'.' => {
                    self.state = State::Dot;
                    i += 1;
                }
                // Anything else is read as line text (b is looked at again).
                State::LineStart => self.state = State::Text,
                State::Dot if b == b'\r' => {
                    self.state = State::DotCr;
                    i += 1;
                }
                // The line has more than the dot: the dot was stuffing (section 4.5.2).
                State::Dot => self.state = State::Text,
                State::DotCr if b == b'\n' => {
                    self.state = State::Ended;
                    return (i + 1, true);
                }
                // `.` CR then not LF: the dot was stuffing and the CR is bare.
                State::DotCr | State::Cr if b != b'\n' => {
                    self.flaws.bare_cr = true;
                    self.text(b"\r", out);
                    self.state = State::Text;
                }
                State::DotCr | State::Cr => {
                    out.extend_from_slice(b"\r\n");
                    self.line_len = 0;
                    self.state = State::LineStart;
                    i += 1;
                }
            }
        }
        (input.len(), self.state == State::Ended)
    }

    fn text(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(bytes);
        self.line_len += bytes.len();
        if self.line_len > self.max_line {
            self.flaws.long_line = true;
        }
    }
}

/// The same checks for BDAT chunks, whose bytes are the message as is (RFC 3030): bare CR,
/// bare LF and long lines, across chunk boundaries.
pub(crate) struct ChunkChecker {
    after_cr: bool,
    line_len: usize,
    max_line: usize,
    flaws: Flaws,
}

impl ChunkChecker {
    pub(crate) fn new(max_line: usize) -> Self {
        ChunkChecker {
            after_cr: false,
            line_len: 0,
            max_line,
            flaws: Flaws::default(),
        }
    }

    pub(crate) fn check(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if bytes[0] == b'\n' {
                    self.line_len = 0;
                    bytes = &bytes[1..];
                    continue;
                }
                self.flaws.bare_cr = true;
                self.line_len += 1;
            }
            let Some(p) = memchr2(b'\r', b'\n', bytes) else {
                self.line(bytes.len());
                return;
            };
            self.line(p);
            if bytes[p] == b'\r' {
                self.after_cr = true;
            } else {
                self.flaws.bare_lf = true;
                self.line(1);
            }
            bytes = &bytes[p + 1..];
        }
    }

    fn line(&mut self, n: usize) {
        self.line_len += n;
        if self.line_len > self.max_line {
            self.flaws.long_line = true;
        }
    }

    /// The flaws of the whole message, once its last chunk was checked.
    pub(crate) fn finish(&mut self) -> Flaws {
        if self.after_cr {
            self.flaws.bare_cr = true;
        }
        self.flaws
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns (message, flaws, rest after the end).
    fn run(input: &[u8], step: usize) -> (Vec<u8>, Flaws, Option<Vec<u8>>) {
        let mut d = DataDecoder::new(998);
        let mut out = Vec::new();
        let mut at = 0;
        while at < input.len() {
            let end = (at + step).min(input.len());
            let (used, ended) = d.decode(&input[at..end], &mut out);
            at += used;
            if ended {
                return (out, d.flaws(), Some(input[at..].to_vec()));
            }
        }
        (out, d.flaws(), None)
    }

    fn every_step(input: &[u8]) -> (Vec<u8>, Flaws, Option<Vec<u8>>) {
        let first = run(input, input.len().max(1));
        for step in 1..8 {
            assert_eq!(run(input, step), first, "step {step}");
        }
        first
    }

    #[test]
    fn plain_message_and_unstuffing() {
        let (msg, flaws, rest) = every_step(b"Subject: x\r\n\r\n..dot\r\n..\r\n\r\n.\r\nQUIT\r\n");
        assert_eq!(msg, b"Subject: x\r\n\r\n.dot\r\n.\r\n\r\n");
        assert_eq!(flaws, Flaws::default());
        assert_eq!(rest.unwrap(), b"QUIT\r\n");
    }

    #[test]
    fn empty_message() {
        let (msg, _, rest) = every_step(b".\r\nNOOP\r\n");
        assert!(msg.is_empty());
        assert_eq!(rest.unwrap(), b"NOOP\r\n");
    }

    #[test]
    fn smuggling_shapes_never_end_data() {
        for shape in [
            &b"\n.\n"[..],
            b"\r.\r",
            b"\n.\r\n",
            b"\r\n.\n",
            b"\r.\r\n",
            b"\n.\r",
            b"\r\n.\r",
            b"\r\n.\r.\r\n",
        ] {
            let mut input = b"Subject: a\r\n\r\nbody".to_vec();
            input.extend_from_slice(shape);
            input.extend_from_slice(
                b"MAIL FROM:<x@example.com>\r\nRCPT TO:<y@example.com>\r\nDATA\r\n",
            );
            let (_, flaws, rest) = every_step(&input);
            assert!(rest.is_none(), "{shape:?} ended data");
            input.extend_from_slice(b"\r\n.\r\n");
            let (msg, flaws2, rest) = every_step(&input);
            assert!(flaws.bare_newline() && flaws2.bare_newline(), "{shape:?}");
            assert_eq!(rest.unwrap(), b"", "{shape:?}");
            assert!(msg.windows(4).any(|w| w == b"MAIL"), "{shape:?}");
        }
    }

    /// RFC 5321 read literally, on the whole input at once: the data ends at the first
    /// CRLF.CRLF (counting the CRLF of the DATA command); a dot starting a line (after CRLF)
    /// is removed; a CR not before LF, or an LF not after CR, is bare.
    fn oracle(input: &[u8]) -> Option<(Vec<u8>, bool, usize)> {
        let mut s = b"\r\n".to_vec();
        s.extend_from_slice(input);
        let p = s.windows(5).position(|w| w == b"\r\n.\r\n")?;
        let raw = &s[2..p + 2];
        let mut msg = Vec::new();
        let mut bare = false;
        for (i, &b) in raw.iter().enumerate() {
            let line_start = i == 0 || (i >= 2 && raw[i - 2..i] == *b"\r\n");
            if line_start && b == b'.' {
                continue;
            }
            if b == b'\r' && raw.get(i + 1) != Some(&b'\n') {
                bare = true;
            }
            if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
                bare = true;
            }
            msg.push(b);
        }
        Some((msg, bare, p + 3))
    }

    #[test]
    fn agrees_with_the_rfc_on_random_input() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            let mut input = Vec::new();
            for _ in 0..(x % 24) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                input.push(b"\r\n.a"[(x % 4) as usize]);
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (msg, flaws, rest) = run(&input, 1 + (x % 5) as usize);
            match oracle(&input) {
                Some((want, bare, used)) => {
                    assert_eq!(msg, want, "{input:?}");
                    assert_eq!(flaws.bare_newline(), bare, "{input:?}");
                    assert_eq!(rest.unwrap(), &input[used..], "{input:?}");
                }
                None => assert!(rest.is_none(), "{input:?} ended"),
            }
        }
    }

    #[test]
    fn long_lines() {
        let ok = format!("{}\r\n.\r\n", "x".repeat(998));
        assert!(!every_step(ok.as_bytes()).1.long_line);
        let long = format!("{}\r\n.\r\n", "x".repeat(999));
        assert!(every_step(long.as_bytes()).1.long_line);
        // A stuffed dot does not count.
        let stuffed = format!(".{}\r\n.\r\n", "x".repeat(998));
        assert!(!every_step(stuffed.as_bytes()).1.long_line);
    }

    #[test]
    fn chunk_checker_across_boundaries() {
        let mut c = ChunkChecker::new(998);
        c.check(b"a\r");
        c.check(b"\nb\r\n");
        assert_eq!(c.finish(), Flaws::default());
        let mut c = ChunkChecker::new(998);
        c.check(b"a\r");
        c.check(b"b");
        assert!(c.finish().bare_cr);
        let mut c = ChunkChecker::new(998);
        c.check(b"a\nb");
        assert!(c.finish().bare_lf);
        let mut c = ChunkChecker::new(998);
        c.check(b"ends with cr\r");
        assert!(c.finish().bare_cr);
        let mut c = ChunkChecker::new(3);
        c.check(b"abc\r\nab");
        c.check(b"cd");
        assert!(c.finish().long_line);
    }
}
