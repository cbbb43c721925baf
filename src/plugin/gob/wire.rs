//! Gob primitives: unsigned/signed integers, floats, byte strings, and a bounds-checked reader.

use super::Error;

/// Appends `x` as a gob unsigned integer.
pub(crate) fn put_uint(out: &mut Vec<u8>, x: u64) {
    if x < 0x80 {
        // Fits: checked just above.
        out.push(x as u8);
        return;
    }
    let bytes = x.to_be_bytes();
    let skip = (x.leading_zeros() / 8) as usize;
    let n = bytes.len() - skip;
    // n is 1..=8, so 256 - n fits in a byte.
    out.push((256 - n) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

/// Appends `i` as a gob signed integer (complement bit in the lowest position).
pub(crate) fn put_int(out: &mut Vec<u8>, i: i64) {
    let u = if i < 0 {
        ((!i as u64) << 1) | 1
    } else {
        (i as u64) << 1
    };
    put_uint(out, u);
}

/// Appends a float as gob does: the IEEE bits, byte-reversed, as an unsigned integer.
pub(crate) fn put_float(out: &mut Vec<u8>, f: f64) {
    put_uint(out, f.to_bits().swap_bytes());
}

/// Appends a length-prefixed byte string.
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Reads an unsigned integer from the front of `buf` if it is complete:
/// `Ok(None)` when more bytes are needed, else the value and its width.
pub(crate) fn peek_uint(buf: &[u8], offset: u64) -> Result<Option<(u64, usize)>, Error> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first < 0x80 {
        return Ok(Some((u64::from(first), 1)));
    }
    let n = 256 - usize::from(first);
    if n > 8 {
        return Err(Error::BadUint { offset });
    }
    if buf.len() < 1 + n {
        return Ok(None);
    }
    let x = buf[1..=n]
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    Ok(Some((x, 1 + n)))
}

/// A cursor over one complete message; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Stream offset of `buf[0]`, for error messages.
    base: u64,
    /// For a top-level value spread over joined messages: where each message ends.
    boundaries: &'a [usize],
    top: bool,
    wants_next: bool,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], base: u64) -> Self {
        Self {
            buf,
            pos: 0,
            base,
            boundaries: &[],
            top: false,
            wants_next: false,
        }
    }

    /// Marks this reader as reading a whole value message (possibly several joined ones
    /// ending at `boundaries`), which may ask for the next message.
    pub(crate) fn top_level(mut self, boundaries: &'a [usize]) -> Self {
        self.boundaries = boundaries;
        self.top = true;
        self
    }

    /// Whether the read position is where one joined message ends and the next begins.
    pub(crate) fn at_boundary(&self) -> bool {
        self.boundaries.contains(&self.pos)
    }

    /// Records that the value continues in a message not yet joined (only a top-level
    /// reader can ask; inside a length-delimited part the data is simply truncated).
    pub(crate) fn request_next_message(&mut self) {
        self.wants_next = self.top;
    }

    pub(crate) fn wants_next_message(&self) -> bool {
        self.wants_next
    }

    /// Stream offset of the next byte.
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn read_uint(&mut self) -> Result<u64, Error> {
        let offset = self.offset();
        match peek_uint(&self.buf[self.pos..], offset)? {
            Some((x, w)) => {
                self.pos += w;
                Ok(x)
            }
            None => Err(Error::Truncated {
                what: "integer",
                offset,
            }),
        }
    }

    pub(crate) fn read_int(&mut self) -> Result<i64, Error> {
        let u = self.read_uint()?;
        Ok(if u & 1 == 1 {
            !((u >> 1) as i64)
        } else {
            (u >> 1) as i64
        })
    }

    pub(crate) fn read_float(&mut self) -> Result<f64, Error> {
        Ok(f64::from_bits(self.read_uint()?.swap_bytes()))
    }

    /// A length, checked against the bytes left so that callers never allocate for more
    /// items than the message can hold (every gob item takes at least one byte).
    pub(crate) fn read_len(&mut self, what: &'static str) -> Result<usize, Error> {
        let offset = self.offset();
        let n = self.read_uint()?;
        if n > self.remaining() as u64 {
            return Err(Error::Invalid {
                detail: format!(
                    "{what} length {n} exceeds the {} bytes left",
                    self.remaining()
                ),
                offset,
            });
        }
        // Bounded by remaining(), itself a usize.
        Ok(n as usize)
    }

    pub(crate) fn read_bytes(&mut self, what: &'static str) -> Result<&'a [u8], Error> {
        let n = self.read_len(what)?;
        let b = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    pub(crate) fn read_string(&mut self, what: &'static str) -> Result<String, Error> {
        // Go does not validate UTF-8 in strings; keep what can be kept.
        Ok(String::from_utf8_lossy(self.read_bytes(what)?).into_owned())
    }

    /// Splits off the next `n` bytes as their own reader.
    pub(crate) fn sub(&mut self, n: usize) -> Reader<'a> {
        let r = Reader::new(&self.buf[self.pos..self.pos + n], self.offset());
        self.pos += n;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uint(x: u64) -> Vec<u8> {
        let mut v = Vec::new();
        put_uint(&mut v, x);
        v
    }
    fn int(x: i64) -> Vec<u8> {
        let mut v = Vec::new();
        put_int(&mut v, x);
        v
    }

    #[test]
    fn unsigned_integers_match_the_spec_examples() {
        assert_eq!(uint(0), [0x00]);
        assert_eq!(uint(127), [0x7f]);
        assert_eq!(uint(128), [0xff, 0x80]);
        assert_eq!(uint(256), [0xfe, 0x01, 0x00]);
        assert_eq!(uint(1 << 32), [0xfb, 1, 0, 0, 0, 0]);
        assert_eq!(
            uint(u64::MAX),
            [0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn signed_integers_match_the_spec_examples() {
        for (i, want) in [
            (0i64, vec![0x00]),
            (1, vec![0x02]),
            (-1, vec![0x01]),
            (22, vec![0x2c]),
            (-129, vec![0xfe, 0x01, 0x01]),
            (1024, vec![0xfe, 0x08, 0x00]),
            (65, vec![0xff, 0x82]),
            (-65, vec![0xff, 0x81]),
            (-66, vec![0xff, 0x83]),
        ] {
            assert_eq!(int(i), want, "{i}");
        }
    }

    #[test]
    fn floats_are_byte_reversed() {
        let mut v = Vec::new();
        put_float(&mut v, 17.0);
        assert_eq!(v, [0xfe, 0x31, 0x40]);
        let mut r = Reader::new(&v, 0);
        assert_eq!(r.read_float(), Ok(17.0));
    }

    #[test]
    fn integers_round_trip_at_the_edges() {
        for i in [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX] {
            let v = int(i);
            assert_eq!(Reader::new(&v, 0).read_int(), Ok(i));
        }
    }

    #[test]
    fn bad_and_short_integers_are_errors() {
        assert_eq!(
            Reader::new(&[0xf7, 0, 0, 0, 0, 0, 0, 0, 0, 0], 5).read_uint(),
            Err(Error::BadUint { offset: 5 })
        );
        assert!(matches!(
            Reader::new(&[0xfe, 0x01], 0).read_uint(),
            Err(Error::Truncated { .. })
        ));
        assert!(Reader::new(&[0x05, 1, 2], 0).read_bytes("string").is_err());
    }
}
