//! [`TypedStore`]: keys and values as serde types over a byte [`Store`].

use std::borrow::{Borrow, BorrowMut};
use std::marker::PhantomData;

use cairn_checkpoint::codec::{self, Flavour};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::store::Store;
use crate::view::Entries;

/// A [`Store`] of serde keys and values (docs/format.md, "Typed store encoding"): keys are
/// encoded in [`Flavour::Ordered`] (big-endian, fixed-width integers), values in
/// [`Flavour::Standard`] (bincode 2's standard configuration).
///
/// Ranges follow the keys' *byte* order, which is their value order for unsigned integers,
/// `bool`, `char`, fixed-size byte arrays, `Option`s, enums, and tuples and structs of these;
/// **not** for signed integers (negatives sort after positives), floats, strings or sequences
/// (shorter first). Use unsigned or fixed-size keys when range order matters.
///
/// ```
/// use std::sync::Arc;
/// use cairn_store::{Store, StoreOptions, TypedStore};
///
/// # fn main() -> Result<(), cairn_store::Error> {
/// let fs = Arc::new(cairn_fs::SimFs::new(3));
/// let mut counts: TypedStore<(u32, u64), String> =
///     TypedStore::new(Store::open(fs, "/counts", StoreOptions::default())?);
/// counts.put(&(1, 20), &"twenty".to_string())?;
/// counts.put(&(1, 3), &"three".to_string())?;
/// counts.put(&(2, 0), &"other".to_string())?;
/// let user_1: Vec<_> = counts.range(&(1, 0), &(2, 0))?.collect::<Result<_, _>>()?;
/// assert_eq!(user_1, vec![((1, 3), "three".to_string()), ((1, 20), "twenty".to_string())]);
/// # Ok(())
/// # }
/// ```
///
/// The store is held as `S`: a `Store` (owned, the default), a `&mut Store` (borrowed, as the
/// task runtime's context hands it out), or a `&Store` (reads only).
#[derive(Debug)]
pub struct TypedStore<K, V, S = Store> {
    store: S,
    _types: PhantomData<fn() -> (K, V)>,
}

fn encode<T: Serialize>(value: &T, flavour: Flavour, what: &'static str) -> Result<Vec<u8>> {
    codec::encode_as(value, flavour).map_err(|source| Error::Codec { what, source })
}

fn decode<T: DeserializeOwned>(bytes: &[u8], flavour: Flavour, what: &'static str) -> Result<T> {
    codec::decode_as(bytes, flavour).map_err(|source| Error::Codec { what, source })
}

impl<K, V, S> TypedStore<K, V, S>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
    S: Borrow<Store>,
{
    /// Typed access to `store`.
    pub fn new(store: S) -> TypedStore<K, V, S> {
        TypedStore { store, _types: PhantomData }
    }

    /// The byte store underneath.
    pub fn store(&self) -> &Store {
        self.store.borrow()
    }

    /// The byte store underneath, for flush, sync, snapshots and compaction.
    pub fn store_mut(&mut self) -> &mut Store
    where
        S: BorrowMut<Store>,
    {
        self.store.borrow_mut()
    }

    /// The byte store back.
    pub fn into_inner(self) -> S {
        self.store
    }

    /// The value of `key`, or `None`.
    ///
    /// # Errors
    /// [`Error::Codec`] if the key cannot be encoded or the value decoded; as for
    /// [`Store::get`].
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let key = encode(key, Flavour::Ordered, "encode key")?;
        match self.store().get(&key)? {
            Some(value) => Ok(Some(decode(&value, Flavour::Standard, "decode value")?)),
            None => Ok(None),
        }
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// [`Error::Codec`] if either cannot be encoded; as for [`Store::put`].
    pub fn put(&mut self, key: &K, value: &V) -> Result<()>
    where
        S: BorrowMut<Store>,
    {
        let key = encode(key, Flavour::Ordered, "encode key")?;
        let value = encode(value, Flavour::Standard, "encode value")?;
        self.store_mut().put(&key, &value)
    }

    /// Sets every key to its value, atomically.
    ///
    /// # Errors
    /// As for [`TypedStore::put`] and [`Store::put_all`].
    pub fn put_all(&mut self, entries: &[(K, V)]) -> Result<()>
    where
        S: BorrowMut<Store>,
    {
        let encoded = entries
            .iter()
            .map(|(k, v)| {
                Ok((
                    encode(k, Flavour::Ordered, "encode key")?,
                    encode(v, Flavour::Standard, "encode value")?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        self.store_mut().put_all(&encoded)
    }

    /// Removes `key`.
    ///
    /// # Errors
    /// As for [`TypedStore::put`].
    pub fn delete(&mut self, key: &K) -> Result<()>
    where
        S: BorrowMut<Store>,
    {
        let key = encode(key, Flavour::Ordered, "encode key")?;
        self.store_mut().delete(&key)
    }

    /// Removes every key, atomically.
    ///
    /// # Errors
    /// As for [`TypedStore::put_all`].
    pub fn delete_all(&mut self, keys: &[K]) -> Result<()>
    where
        S: BorrowMut<Store>,
    {
        let keys =
            keys.iter().map(|k| encode(k, Flavour::Ordered, "encode key")).collect::<Result<Vec<_>>>()?;
        self.store_mut().delete_all(&keys)
    }

    /// The entries with encoded keys in `[from, to)`, in byte order (see the type's
    /// documentation for when that is the keys' order).
    ///
    /// # Errors
    /// As for [`Store::range`]; items fail with [`Error::Codec`] if they do not decode.
    pub fn range(&self, from: &K, to: &K) -> Result<TypedEntries<K, V>> {
        let from = encode(from, Flavour::Ordered, "encode key")?;
        let to = encode(to, Flavour::Ordered, "encode key")?;
        Ok(TypedEntries { inner: self.store().range(&from, &to)?, _types: PhantomData })
    }

    /// Every entry, in encoded key order.
    ///
    /// # Errors
    /// As for [`Store::iter`].
    pub fn iter(&self) -> Result<TypedEntries<K, V>> {
        Ok(TypedEntries { inner: self.store().iter()?, _types: PhantomData })
    }
}

/// Decoded entries of a [`TypedStore`] range.
#[derive(Debug)]
pub struct TypedEntries<K, V> {
    inner: Entries,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: DeserializeOwned, V: DeserializeOwned> Iterator for TypedEntries<K, V> {
    type Item = Result<(K, V)>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.inner.next()?;
        Some(item.and_then(|(k, v)| {
            Ok((decode(&k, Flavour::Ordered, "decode key")?, decode(&v, Flavour::Standard, "decode value")?))
        }))
    }
}
