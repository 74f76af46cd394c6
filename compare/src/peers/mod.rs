//! The peers, each behind [`crate::peer::Peer`].

mod cairn;
mod commitlog;
mod fjall;
mod okaywal;
mod raft_engine;
mod raw;
mod redb;
mod sled;

use crate::peer::Peer;

/// Every system measured, the physical baseline first, then cairn, then the peers.
pub fn all() -> Vec<Box<dyn Peer>> {
    vec![
        Box::new(raw::Raw { preallocated: false }),
        Box::new(raw::Raw { preallocated: true }),
        Box::new(cairn::Cairn { snapshots: true }),
        Box::new(cairn::Cairn { snapshots: false }),
        Box::new(commitlog::Commitlog),
        Box::new(fjall::Fjall),
        Box::new(redb::Redb),
        Box::new(sled::Sled),
        Box::new(okaywal::Okaywal),
        Box::new(raft_engine::RaftEngine),
    ]
}
