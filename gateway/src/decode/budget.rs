//! The memory budget of decompressed bytes in flight, across every request
//! (`limits.max_decompressed_bytes_in_flight`).
//!
//! A body is decompressed into memory reserved here first: the buffer never grows past
//! its reservation (growing one holds the old and the new buffer at once, so both are
//! reserved while it grows). The reservation is held until the request's decoded data
//! is dropped ([`Reservation`] gives it back on drop). A request that cannot reserve is
//! answered 503 with `Retry-After`, without decompressing further: ten small bodies that
//! expand to 50 MB each cannot lift the process past the budget.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::BodyError;

/// The first buffer of a body whose decompressed size nobody declared.
const FIRST_GUESS: usize = 64 << 10;

/// The bytes reserved now, shared by every request.
#[derive(Clone, Debug, Default)]
pub struct Budget {
    used: Arc<AtomicU64>,
}

impl Budget {
    /// Bytes reserved now.
    pub fn in_use(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty reservation against `cap` bytes in all.
    pub fn reservation(&self, cap: u64) -> Reservation {
        Reservation {
            used: self.used.clone(),
            held: 0,
            cap,
        }
    }
}

/// Bytes one request holds of the [`Budget`]; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    used: Arc<AtomicU64>,
    held: u64,
    cap: u64,
}

impl Reservation {
    /// Bytes held.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// The budget's size.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Holds `to` bytes in all (more or fewer than now); false, holding what it held,
    /// when the budget has no room for the difference.
    pub fn hold(&mut self, to: u64) -> bool {
        if to <= self.held {
            self.used.fetch_sub(self.held - to, Ordering::Relaxed);
            self.held = to;
            return true;
        }
        let more = to - self.held;
        let cap = self.cap;
        let taken = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(more).filter(|n| *n <= cap)
            });
        if taken.is_ok() {
            self.held = to;
        }
        taken.is_ok()
    }

    fn over(&self, wanted: u64) -> BodyError {
        BodyError::OverBudget(format!(
            "decompressing this body needs {wanted} bytes and the gateway has {} of its {} (limits.max_decompressed_bytes_in_flight) in use",
            self.used.load(Ordering::Relaxed),
            self.cap
        ))
    }

    /// Holds `n` bytes or says why not.
    pub fn need(&mut self, n: u64) -> Result<(), BodyError> {
        if self.hold(n) {
            Ok(())
        } else {
            Err(self.over(n))
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.used.fetch_sub(self.held, Ordering::Relaxed);
    }
}

/// Reads `reader` to its end into a buffer that never grows past `reserved`: at most
/// `max` bytes (413 past it), starting with room for `expected` bytes (a size the body
/// declared, or a guess). `base` bytes more are held while the reader lives (a
/// decoder's window).
pub fn read_within(
    reader: impl Read,
    expected: Option<usize>,
    max: usize,
    what: &str,
    reserved: &mut Reservation,
    base: u64,
) -> Result<Vec<u8>, BodyError> {
    let too_large = || {
        BodyError::TooLarge(format!(
            "the body decompresses to more than the limit of {max} bytes"
        ))
    };
    let mut reader = reader.take(max as u64 + 1);
    let mut out: Vec<u8> = Vec::new();
    let mut len = 0usize;
    let mut want = expected.unwrap_or(FIRST_GUESS).clamp(1, max.max(1));
    loop {
        // Room for `want` bytes: the old buffer and the new one are held while it grows.
        if want > out.len() {
            let old = out.capacity() as u64;
            reserved.need(base + old + want as u64)?;
            out.truncate(len);
            out.reserve_exact(want - len);
            out.resize(want, 0);
            reserved.need(base + out.capacity() as u64)?;
        }
        let n = reader
            .read(&mut out[len..])
            .map_err(|e| BodyError::Malformed(format!("{what}: {e}")))?;
        if n == 0 {
            break;
        }
        len += n;
        if len > max {
            return Err(too_large());
        }
        if len == out.len() {
            // Full: one byte more says whether it is over.
            let mut probe = [0u8; 1];
            let n = reader
                .read(&mut probe)
                .map_err(|e| BodyError::Malformed(format!("{what}: {e}")))?;
            if n == 0 {
                break;
            }
            if len + 1 > max {
                return Err(too_large());
            }
            want = (len.saturating_mul(2)).clamp(len + 1, max);
            if want > out.len() {
                let old = out.capacity() as u64;
                reserved.need(base + old + want as u64)?;
                out.reserve_exact(want - len);
                out.resize(want, 0);
                reserved.need(base + out.capacity() as u64)?;
            }
            out[len] = probe[0];
            len += 1;
        }
    }
    drop(reader);
    out.truncate(len);
    reserved.need(out.capacity() as u64)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_is_given_back_when_dropped_and_the_cap_holds() {
        let b = Budget::default();
        let mut r = b.reservation(100);
        assert!(r.hold(60));
        let mut s = b.reservation(100);
        assert!(!s.hold(41));
        assert_eq!(s.held(), 0);
        assert!(s.hold(40));
        assert_eq!(b.in_use(), 100);
        assert!(r.hold(10));
        assert_eq!(b.in_use(), 50);
        drop(r);
        drop(s);
        assert_eq!(b.in_use(), 0);
    }

    #[test]
    fn reading_grows_within_the_reservation_and_stops_at_the_budget() {
        let data = vec![3u8; 300 << 10];
        // Declared: one buffer of exactly the size.
        let b = Budget::default();
        let mut r = b.reservation(1 << 20);
        let got = read_within(&data[..], Some(data.len()), 1 << 20, "t", &mut r, 0);
        assert_eq!(got.as_ref().map(Vec::len), Ok(data.len()));
        assert_eq!(r.held(), data.len() as u64);
        drop(r);
        // Undeclared: doubling from 64 KiB; the last buffer is what stays held.
        let mut r = b.reservation(4 << 20);
        let got = read_within(&data[..], None, 1 << 20, "t", &mut r, 0).map(|v| v.len());
        assert_eq!(got, Ok(data.len()));
        assert!(r.held() >= data.len() as u64 && r.held() <= 2 * data.len() as u64);
        drop(r);
        // A budget too small: refused while growing, and nothing stays held.
        let mut r = b.reservation(256 << 10);
        let got = read_within(&data[..], None, 1 << 20, "t", &mut r, 0);
        assert!(matches!(got, Err(BodyError::OverBudget(_))), "{got:?}");
        drop(r);
        assert_eq!(b.in_use(), 0);
        // Over the per-body limit: 413, declared or not.
        let mut r = b.reservation(4 << 20);
        assert!(matches!(
            read_within(&data[..], None, 100 << 10, "t", &mut r, 0),
            Err(BodyError::TooLarge(_))
        ));
        assert!(matches!(
            read_within(&data[..], Some(10), 100 << 10, "t", &mut r, 0),
            Err(BodyError::TooLarge(_))
        ));
        // Exactly the limit is fine.
        let mut r = b.reservation(4 << 20);
        assert_eq!(
            read_within(&data[..], None, data.len(), "t", &mut r, 0).map(|v| v.len()),
            Ok(data.len())
        );
    }
}
