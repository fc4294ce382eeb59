//! `FrameQueue`: a reusable set of Ethernet frame buffers, so that emitting a frame does not allocate.

/// Frames in order, each in a buffer of its own. Clearing keeps the buffers, so a queue that
/// lives as long as the run allocates only while it grows to its largest burst. A caller that
/// wants to keep a frame can trade it for a spare buffer of its own with
/// [`FrameQueue::swap_frame`] instead of copying it.
#[derive(Default, Debug)]
pub struct FrameQueue {
    /// The first `len` hold the frames; the rest are spare buffers kept for reuse.
    buffers: Vec<Vec<u8>>,
    len: usize,
}

impl FrameQueue {
    /// An empty queue.
    pub fn new() -> FrameQueue {
        FrameQueue::default()
    }

    /// How many frames it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds no frame.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every frame and keeps their buffers.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The next buffer to fill, emptied.
    fn next_buffer(&mut self) -> &mut Vec<u8> {
        if self.len == self.buffers.len() {
            self.buffers.push(Vec::new());
        }
        self.len += 1;
        let buffer = &mut self.buffers[self.len - 1];
        buffer.clear();
        buffer
    }

    /// Appends a copy of `frame`.
    pub fn push(&mut self, frame: &[u8]) {
        self.next_buffer().extend_from_slice(frame);
    }

    /// Appends a zeroed frame of `len` bytes and lets `fill` write it in place.
    pub fn push_with<R>(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> R {
        let buffer = self.next_buffer();
        buffer.resize(len, 0);
        fill(buffer)
    }

    /// Frame `index`, in the order they were pushed.
    ///
    /// # Panics
    /// When there is no frame `index`.
    pub fn get(&self, index: usize) -> &[u8] {
        assert!(index < self.len, "frame {index} of {}", self.len);
        &self.buffers[index]
    }

    /// Exchanges the buffer of frame `index` with `buffer`: `buffer` now holds the frame, and
    /// the queue keeps the caller's old buffer (whatever it held) for reuse. Until the queue is
    /// cleared, frame `index` reads as that old buffer's contents.
    pub fn swap_frame(&mut self, index: usize, buffer: &mut Vec<u8>) {
        assert!(index < self.len, "frame {index} of {}", self.len);
        std::mem::swap(&mut self.buffers[index], buffer);
    }

    /// Every frame, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.buffers[..self.len].iter().map(Vec::as_slice)
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
        assert_eq!(q.iter().count(), 1);
    }

    #[test]
    fn a_swapped_out_frame_leaves_a_reusable_buffer() {
        let mut q = FrameQueue::new();
        q.push(&[1, 2, 3]);
        q.push_with(4, |buf| buf.copy_from_slice(&[4, 5, 6, 7]));
        let mut mine = vec![9; 100];
        q.swap_frame(1, &mut mine);
        assert_eq!(mine, vec![4, 5, 6, 7]);
        assert_eq!(q.get(0), &[1, 2, 3]);
        q.clear();
        // The traded buffer is reused, cleared, and zero-filled where asked.
        q.push(&[8]);
        q.push_with(3, |buf| assert_eq!(buf, &[0, 0, 0]));
        assert_eq!(q.get(0), &[8]);
        assert_eq!(q.get(1), &[0, 0, 0]);
    }
}
