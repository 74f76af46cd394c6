//! The simulated file tree: inodes with live and durable bytes, directories with live and durable
//! entries, and the pending operations that separate the two.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path};
use std::sync::Arc;

pub(crate) type Id = u64;

/// The id of the root directory, which always exists.
pub(crate) const ROOT: Id = 0;

/// What a directory entry names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Node {
    File(Id),
    Dir(Id),
}

/// A change to a file since its last successful sync, in the order it was made.
#[derive(Clone, Debug)]
pub(crate) enum Pending {
    Write { pos: u64, data: Arc<[u8]> },
    SetLen(u64),
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Inode {
    /// What reads see.
    pub(crate) live: Arc<Vec<u8>>,
    /// What survives a power cut with every pending change lost.
    pub(crate) durable: Arc<Vec<u8>>,
    /// Changes since the last sync; `durable` with all of them applied equals `live`, unless a
    /// failed sync dropped some (then the live bytes never reach the disk).
    pub(crate) pending: Vec<Pending>,
}

/// A change to a directory since its last sync. `group` ties together the halves of a rename
/// across two directories, which survive or vanish together.
#[derive(Clone, Debug)]
pub(crate) enum DirOp {
    Insert { group: u64, name: OsString, node: Node },
    Remove { group: u64, name: OsString },
    Rename { group: u64, from: OsString, to: OsString, node: Node },
}

impl DirOp {
    pub(crate) fn group(&self) -> u64 {
        match self {
            DirOp::Insert { group, .. } | DirOp::Remove { group, .. } | DirOp::Rename { group, .. } => *group,
        }
    }

    /// Applies the operation to a directory map.
    pub(crate) fn apply(&self, entries: &mut BTreeMap<OsString, Node>) {
        match self {
            DirOp::Insert { name, node, .. } => {
                entries.insert(name.clone(), *node);
            }
            DirOp::Remove { name, .. } => {
                entries.remove(name);
            }
            DirOp::Rename { from, to, node, .. } => {
                if entries.get(from) == Some(node) {
                    entries.remove(from);
                }
                entries.insert(to.clone(), *node);
            }
        }
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Dir {
    pub(crate) live: BTreeMap<OsString, Node>,
    pub(crate) durable: BTreeMap<OsString, Node>,
    pub(crate) pending: Vec<DirOp>,
}

/// All files and directories of one simulated file system. Cloning is cheap for file contents
/// (shared until written).
#[derive(Clone, Debug)]
pub(crate) struct Tree {
    pub(crate) inodes: BTreeMap<Id, Inode>,
    pub(crate) dirs: BTreeMap<Id, Dir>,
    next_id: Id,
    next_group: u64,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file or directory", path.display()))
}

fn broken(what: &str) -> io::Error {
    // Only reachable if the tree's own bookkeeping is wrong; reported rather than panicking.
    io::Error::other(format!("simulator tree inconsistent: {what}"))
}

/// The normal components of `path`; `..` is refused, `.` and the root are skipped.
pub(crate) fn components(path: &Path) -> io::Result<Vec<&OsStr>> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: `..` is not supported by the simulator", path.display()),
                ));
            }
        }
    }
    Ok(parts)
}

impl Tree {
    pub(crate) fn new() -> Tree {
        let mut dirs = BTreeMap::new();
        dirs.insert(ROOT, Dir::default());
        Tree { inodes: BTreeMap::new(), dirs, next_id: ROOT + 1, next_group: 0 }
    }

    /// A tree made of the given directories and inodes, with everything durable.
    pub(crate) fn from_durable(
        dirs: BTreeMap<Id, BTreeMap<OsString, Node>>,
        files: BTreeMap<Id, Vec<u8>>,
    ) -> Tree {
        let next_id = dirs.keys().chain(files.keys()).max().map_or(ROOT + 1, |max| max + 1);
        let dirs = dirs
            .into_iter()
            .map(|(id, entries)| (id, Dir { live: entries.clone(), durable: entries, pending: Vec::new() }))
            .collect();
        let inodes = files
            .into_iter()
            .map(|(id, bytes)| {
                let bytes = Arc::new(bytes);
                (id, Inode { live: Arc::clone(&bytes), durable: bytes, pending: Vec::new() })
            })
            .collect();
        Tree { inodes, dirs, next_id, next_group: 0 }
    }

    fn fresh_id(&mut self) -> Id {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn fresh_group(&mut self) -> u64 {
        let group = self.next_group;
        self.next_group += 1;
        group
    }

    pub(crate) fn dir(&self, id: Id) -> io::Result<&Dir> {
        self.dirs.get(&id).ok_or_else(|| broken("directory id without directory"))
    }

    fn dir_mut(&mut self, id: Id) -> io::Result<&mut Dir> {
        self.dirs.get_mut(&id).ok_or_else(|| broken("directory id without directory"))
    }

    pub(crate) fn inode(&self, id: Id) -> io::Result<&Inode> {
        self.inodes.get(&id).ok_or_else(|| broken("file id without inode"))
    }

    pub(crate) fn inode_mut(&mut self, id: Id) -> io::Result<&mut Inode> {
        self.inodes.get_mut(&id).ok_or_else(|| broken("file id without inode"))
    }

    /// The directory named by `parts`, through live entries.
    fn walk(&self, path: &Path, parts: &[&OsStr]) -> io::Result<Id> {
        let mut dir = ROOT;
        for part in parts {
            match self.dir(dir)?.live.get(*part) {
                Some(Node::Dir(id)) => dir = *id,
                Some(Node::File(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("{}: a component is a file", path.display()),
                    ));
                }
                None => return Err(not_found(path)),
            }
        }
        Ok(dir)
    }

    /// The live node at `path` (the root is `Node::Dir(ROOT)`).
    pub(crate) fn lookup(&self, path: &Path) -> io::Result<Option<Node>> {
        let parts = components(path)?;
        let Some((name, parents)) = parts.split_last() else {
            return Ok(Some(Node::Dir(ROOT)));
        };
        let parent = match self.walk(path, parents) {
            Ok(parent) => parent,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(self.dir(parent)?.live.get(*name).copied())
    }

    /// The parent directory id and the final name of `path`.
    pub(crate) fn parent_of<'p>(&self, path: &'p Path) -> io::Result<(Id, &'p OsStr)> {
        let parts = components(path)?;
        let Some((name, parents)) = parts.split_last() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the root has no parent"));
        };
        Ok((self.walk(path, parents)?, name))
    }

    pub(crate) fn file_at(&self, path: &Path) -> io::Result<Id> {
        match self.lookup(path)? {
            Some(Node::File(id)) => Ok(id),
            Some(Node::Dir(_)) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{}: is a directory", path.display()),
            )),
            None => Err(not_found(path)),
        }
    }

    pub(crate) fn dir_at(&self, path: &Path) -> io::Result<Id> {
        match self.lookup(path)? {
            Some(Node::Dir(id)) => Ok(id),
            Some(Node::File(_)) => Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{}: not a directory", path.display()),
            )),
            None => Err(not_found(path)),
        }
    }

    /// Creates an empty file named `name` in `parent`.
    pub(crate) fn create_file(&mut self, parent: Id, name: &OsStr) -> io::Result<Id> {
        let id = self.fresh_id();
        let group = self.fresh_group();
        self.inodes.insert(id, Inode::default());
        let dir = self.dir_mut(parent)?;
        dir.live.insert(name.to_owned(), Node::File(id));
        dir.pending.push(DirOp::Insert { group, name: name.to_owned(), node: Node::File(id) });
        Ok(id)
    }

    pub(crate) fn create_dir(&mut self, parent: Id, name: &OsStr) -> io::Result<Id> {
        let id = self.fresh_id();
        let group = self.fresh_group();
        self.dirs.insert(id, Dir::default());
        let dir = self.dir_mut(parent)?;
        dir.live.insert(name.to_owned(), Node::Dir(id));
        dir.pending.push(DirOp::Insert { group, name: name.to_owned(), node: Node::Dir(id) });
        Ok(id)
    }

    pub(crate) fn remove(&mut self, parent: Id, name: &OsStr) -> io::Result<()> {
        let group = self.fresh_group();
        let dir = self.dir_mut(parent)?;
        dir.live.remove(name);
        dir.pending.push(DirOp::Remove { group, name: name.to_owned() });
        Ok(())
    }

    pub(crate) fn rename(&mut self, from: (Id, &OsStr), to: (Id, &OsStr), node: Node) -> io::Result<()> {
        let group = self.fresh_group();
        if from.0 == to.0 {
            let dir = self.dir_mut(from.0)?;
            dir.live.remove(from.1);
            dir.live.insert(to.1.to_owned(), node);
            dir.pending.push(DirOp::Rename { group, from: from.1.to_owned(), to: to.1.to_owned(), node });
        } else {
            let source = self.dir_mut(from.0)?;
            source.live.remove(from.1);
            source.pending.push(DirOp::Remove { group, name: from.1.to_owned() });
            let target = self.dir_mut(to.0)?;
            target.live.insert(to.1.to_owned(), node);
            target.pending.push(DirOp::Insert { group, name: to.1.to_owned(), node });
        }
        Ok(())
    }

    /// Makes a directory's live entries durable.
    pub(crate) fn sync_dir(&mut self, id: Id) -> io::Result<()> {
        let dir = self.dir_mut(id)?;
        dir.durable = dir.live.clone();
        dir.pending.clear();
        Ok(())
    }

    /// The sum of the live lengths of all files reachable through live entries.
    pub(crate) fn live_bytes(&self) -> u64 {
        let mut total = 0;
        let mut stack = vec![ROOT];
        while let Some(dir) = stack.pop() {
            let Some(dir) = self.dirs.get(&dir) else {
                continue;
            };
            for node in dir.live.values() {
                match node {
                    Node::Dir(id) => stack.push(*id),
                    Node::File(id) => total += self.inodes.get(id).map_or(0, |inode| inode.live.len() as u64),
                }
            }
        }
        total
    }
}

impl Inode {
    pub(crate) fn write(&mut self, pos: u64, data: &[u8]) {
        write_into(Arc::make_mut(&mut self.live), pos, data);
        self.pending.push(Pending::Write { pos, data: Arc::from(data) });
    }

    pub(crate) fn set_len(&mut self, len: u64) {
        resize(Arc::make_mut(&mut self.live), len);
        self.pending.push(Pending::SetLen(len));
    }

    /// A successful sync: every pending change reaches the durable bytes.
    pub(crate) fn promote(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let durable = Arc::make_mut(&mut self.durable);
        for change in self.pending.drain(..) {
            match change {
                Pending::Write { pos, data } => write_into(durable, pos, &data),
                Pending::SetLen(len) => resize(durable, len),
            }
        }
    }

    /// A failed sync: the pending changes will never reach the disk, though reads still see them.
    pub(crate) fn drop_pending(&mut self) {
        self.pending.clear();
    }
}

pub(crate) fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

pub(crate) fn write_into(bytes: &mut Vec<u8>, pos: u64, data: &[u8]) {
    // Writing nothing changes nothing: in particular it must not extend the file to `pos` (a crash
    // image's write torn to zero bytes would otherwise leave a length no operation produced).
    if data.is_empty() {
        return;
    }
    let start = to_usize(pos);
    let end = start.saturating_add(data.len());
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    if let Some(target) = bytes.get_mut(start..end) {
        target.copy_from_slice(data);
    }
}

pub(crate) fn resize(bytes: &mut Vec<u8>, len: u64) {
    bytes.resize(to_usize(len), 0);
}
