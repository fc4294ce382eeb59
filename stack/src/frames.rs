//! `FrameQueue`: a reusable arena of Ethernet frames, so that emitting a frame does not allocate.

/// Frames appended back to back in one buffer. Clearing keeps the capacity, so a queue that
/// lives as long as the run allocates only while it grows to its largest burst.
#[derive(Default, Debug)]
pub struct FrameQueue {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl FrameQueue {
    pub fn new() -> FrameQueue {
        FrameQueue::default()
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// Appends a copy of `frame`.
    pub fn push(&mut self, frame: &[u8]) {
        self.bytes.extend_from_slice(frame);
        self.ends.push(self.bytes.len());
    }

    /// Appends a zeroed frame of `len` bytes and lets `fill` write it in place.
    pub fn push_with<R>(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> R {
        let start = self.bytes.len();
        self.bytes.resize(start + len, 0);
        let result = fill(&mut self.bytes[start..]);
        self.ends.push(self.bytes.len());
        result
    }

    pub fn get(&self, index: usize) -> &[u8] {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        &self.bytes[start..self.ends[index]]
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_back_in_order_and_clear_keeps_nothing() {
        let mut q = FrameQueue::new();
        q.push(&[1, 2, 3]);
        let r = q.push_with(2, |buf| {
            buf.copy_from_slice(&[9, 8]);
            7
        });
        q.push(&[]);
        assert_eq!(r, 7);
        assert_eq!(q.len(), 3);
        let all: Vec<&[u8]> = q.iter().collect();
        assert_eq!(all, vec![&[1u8, 2, 3][..], &[9, 8][..], &[][..]]);
        q.clear();
        assert!(q.is_empty());
        q.push(&[5]);
        assert_eq!(q.get(0), &[5]);
    }
}
