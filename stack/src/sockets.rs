//! `SocketTable`: a backend's open sockets by [`SocketId`], the one table every backend keeps.

use crate::{SocketError, SocketId};

/// Sockets by id. An id is an index into the table; a closed socket leaves its slot empty, so
/// ids are never reused within a host and a stale id is an error, not another socket.
#[derive(Debug)]
pub struct SocketTable<E> {
    slots: Vec<Option<E>>,
}

impl<E> Default for SocketTable<E> {
    fn default() -> Self {
        SocketTable { slots: Vec::new() }
    }
}

impl<E> SocketTable<E> {
    /// An empty table.
    pub fn new() -> SocketTable<E> {
        SocketTable::default()
    }

    /// Adds a socket and returns its id.
    pub fn insert(&mut self, entry: E) -> SocketId {
        self.slots.push(Some(entry));
        SocketId((self.slots.len() - 1) as u32)
    }

    /// The socket `id`, or `UnknownSocket`.
    pub fn get(&self, id: SocketId) -> Result<&E, SocketError> {
        self.slots
            .get(id.0 as usize)
            .and_then(Option::as_ref)
            .ok_or(SocketError::UnknownSocket(id))
    }

    /// The socket `id`, to change, or `UnknownSocket`.
    pub fn get_mut(&mut self, id: SocketId) -> Result<&mut E, SocketError> {
        self.slots
            .get_mut(id.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(SocketError::UnknownSocket(id))
    }

    /// Takes a socket out of the table; its id is not given out again.
    pub fn remove(&mut self, id: SocketId) -> Result<E, SocketError> {
        self.slots
            .get_mut(id.0 as usize)
            .and_then(Option::take)
            .ok_or(SocketError::UnknownSocket(id))
    }

    /// The open sockets, in the order they were opened.
    pub fn iter(&self) -> impl Iterator<Item = &E> {
        self.slots.iter().flatten()
    }

    /// The open sockets, to change, in the order they were opened.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut E> {
        self.slots.iter_mut().flatten()
    }

    /// Takes every open socket out, leaving the table empty.
    pub fn drain(&mut self) -> impl Iterator<Item = E> + '_ {
        self.slots.drain(..).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_indexes_never_reused_and_stale_ids_are_errors() {
        let mut table = SocketTable::new();
        let a = table.insert("a");
        let b = table.insert("b");
        assert_eq!((a, b), (SocketId(0), SocketId(1)));
        assert_eq!(table.remove(a), Ok("a"));
        assert_eq!(table.get(a), Err(SocketError::UnknownSocket(a)));
        assert_eq!(table.remove(a), Err(SocketError::UnknownSocket(a)));
        assert_eq!(table.insert("c"), SocketId(2));
        *table.get_mut(b).unwrap() = "B";
        assert_eq!(table.iter().copied().collect::<Vec<_>>(), ["B", "c"]);
        assert_eq!(
            table.get(SocketId(9)),
            Err(SocketError::UnknownSocket(SocketId(9)))
        );
        assert_eq!(table.drain().collect::<Vec<_>>(), ["B", "c"]);
        assert_eq!(table.iter().count(), 0);
    }
}
