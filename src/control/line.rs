//! Reading one newline-terminated line at a time with a length cap, so that a client
//! sending endless bytes costs a bounded buffer and gets an error, never a crash.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The longest request line a server accepts (requests are small).
pub const MAX_REQUEST: usize = 64 * 1024;
/// The longest line a client accepts from a server (a status with long log text).
pub const MAX_REPLY: usize = 4 * 1024 * 1024;

/// What the next read gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its newline (invalid UTF-8 replaced).
    Text(String),
    /// The line passed the cap; the rest of it, up to its newline, is skipped.
    TooLong,
    /// The peer closed (an unterminated last line is dropped: it was cut off).
    End,
}

/// Lines from `reader`, each at most `max` bytes.
pub struct LineReader<R> {
    reader: R,
    max: usize,
    buffer: Vec<u8>,
    skipping: bool,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(reader: R, max: usize) -> Self {
        LineReader {
            reader,
            max,
            buffer: Vec::new(),
            skipping: false,
        }
    }

    /// The next line. Cancel-safe between calls only: a read interrupted by `select!`
    /// keeps its partial line in the buffer and continues on the next call.
    pub async fn next(&mut self) -> std::io::Result<Line> {
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                self.buffer.clear();
                return Ok(Line::End);
            }
            match available.iter().position(|byte| *byte == b'\n') {
                Some(end) => {
                    let was_skipping = self.skipping;
                    if !was_skipping {
                        self.buffer.extend_from_slice(&available[..end]);
                    }
                    self.reader.consume(end + 1);
                    self.skipping = false;
                    if was_skipping {
                        continue;
                    }
                    if self.buffer.len() > self.max {
                        self.buffer.clear();
                        return Ok(Line::TooLong);
                    }
                    let text = String::from_utf8_lossy(&self.buffer).into_owned();
                    self.buffer.clear();
                    return Ok(Line::Text(text));
                }
                None => {
                    let length = available.len();
                    if !self.skipping {
                        self.buffer.extend_from_slice(available);
                    }
                    self.reader.consume(length);
                    if !self.skipping && self.buffer.len() > self.max {
                        self.buffer.clear();
                        self.skipping = true;
                        return Ok(Line::TooLong);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<Line> {
        let mut reader = LineReader::new(input, max);
        let mut out = Vec::new();
        loop {
            let line = reader.next().await.expect("read");
            let end = line == Line::End;
            out.push(line);
            if end {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn lines_are_split_and_capped() {
        let text = |s: &str| Line::Text(s.to_string());
        assert_eq!(
            lines(b"a\nbb\n\n", 8).await,
            vec![text("a"), text("bb"), text(""), Line::End]
        );
        assert_eq!(
            lines(b"0123456789\nok\n", 4).await,
            vec![Line::TooLong, text("ok"), Line::End]
        );
        assert_eq!(lines(b"cut off", 64).await, vec![Line::End]);
    }

    #[tokio::test]
    async fn an_endless_line_is_reported_once_and_skipped() {
        let mut input = vec![b'x'; 100_000];
        input.extend_from_slice(b"\nnext\n");
        let reader = tokio::io::BufReader::with_capacity(1024, input.as_slice());
        let mut lines = LineReader::new(reader, 4096);
        assert_eq!(lines.next().await.expect("read"), Line::TooLong);
        assert_eq!(
            lines.next().await.expect("read"),
            Line::Text("next".to_string())
        );
        assert_eq!(lines.next().await.expect("read"), Line::End);
    }
}
