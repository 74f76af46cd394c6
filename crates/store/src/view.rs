//! Consistent read views and range iterators.

use std::ops::Bound;

use crate::error::{Error, Result};
use crate::index::{Key, KeyBytes, Slot};
use std::sync::Arc;

use crate::cache::ValueCache;
use crate::store::{State, read_slot};

/// Entries the iterator copies out of the index at a time.
const CHUNK: usize = 256;

/// A consistent view of a store, from [`Store::view`](crate::Store::view): it sees the store as
/// it was when taken, whatever is written since, and keeps the changelog segments it reads
/// from (even those compaction replaces) until dropped.
#[derive(Clone, Debug)]
pub struct ReadView {
    state: State,
    cache: Option<Arc<ValueCache>>,
    key_bytes_max: usize,
}

impl ReadView {
    pub(crate) fn new(state: State, cache: Option<Arc<ValueCache>>, key_bytes_max: usize) -> ReadView {
        ReadView { state, cache, key_bytes_max }
    }

    /// The value of `key` in the view, or `None`.
    ///
    /// # Errors
    /// As for [`Store::get`](crate::Store::get).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if key.len() > self.key_bytes_max {
            return Err(Error::KeyTooLarge { bytes: key.len(), max: self.key_bytes_max });
        }
        read_slot(&self.state.segments, self.cache.as_deref(), key, self.state.index.get(KeyBytes::new(key)))
    }

    /// Keys in the view.
    pub fn len(&self) -> usize {
        self.state.index.len()
    }

    /// Whether the view holds no key.
    pub fn is_empty(&self) -> bool {
        self.state.index.is_empty()
    }

    /// The entries with keys in `[from, to)`, in byte order.
    ///
    /// # Errors
    /// [`Error::InvalidRange`] if `from` is after `to`.
    pub fn range(&self, from: &[u8], to: &[u8]) -> Result<Entries> {
        if from > to {
            return Err(Error::InvalidRange);
        }
        Ok(Entries::new(self.clone(), Bound::Included(Key::new(from)), Some(Key::new(to))))
    }

    /// Every entry, in key byte order.
    pub fn iter(&self) -> Entries {
        Entries::new(self.clone(), Bound::Unbounded, None)
    }
}

/// An iterator over a [`ReadView`]'s entries in key byte order, yielding owned keys and values
/// (an error ends it).
#[derive(Debug)]
pub struct Entries {
    view: ReadView,
    /// Where the next chunk starts.
    next: Bound<Key>,
    /// Exclusive end, or none.
    to: Option<Key>,
    chunk: std::vec::IntoIter<(Key, Slot)>,
    done: bool,
}

impl Entries {
    fn new(view: ReadView, from: Bound<Key>, to: Option<Key>) -> Entries {
        Entries { view, next: from, to, chunk: Vec::new().into_iter(), done: false }
    }

    fn refill(&mut self) {
        let upper = match &self.to {
            Some(to) => Bound::Excluded(to.clone()),
            None => Bound::Unbounded,
        };
        let index = &self.view.state.index;
        if matches!((&self.next, &upper), (Bound::Included(a), Bound::Excluded(b)) if a >= b) {
            self.done = true;
            return;
        }
        let chunk: Vec<(Key, Slot)> = index
            .range::<Key, _>((self.next.clone(), upper))
            .take(CHUNK)
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        match chunk.last() {
            Some((last, _)) => self.next = Bound::Excluded(last.clone()),
            None => self.done = true,
        }
        if chunk.len() < CHUNK {
            self.done = true;
        }
        self.chunk = chunk.into_iter();
    }
}

impl Iterator for Entries {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((key, slot)) = self.chunk.next() {
                return match read_slot(&self.view.state.segments, None, key.as_bytes(), Some(&slot)) {
                    Ok(Some(value)) => Some(Ok((key.as_bytes().to_vec(), value))),
                    Ok(None) => continue,
                    Err(e) => {
                        self.done = true;
                        self.chunk = Vec::new().into_iter();
                        Some(Err(e))
                    }
                };
            }
            if self.done {
                return None;
            }
            self.refill();
        }
    }
}
