//! The data of an `Idempotency-Key` claim, as the store keeps it: the key and what identifies
//! its request ([`Claim`]), the answer saved with it ([`Saved`]), and what a second claim finds
//! ([`Claimed`], [`Earlier`]). The relay reads the key from the request's headers and hashes
//! the request; the store claims the key in the transaction that does the request's work, so
//! that a key is never saved without its work, nor the other way round.

/// The scope of every key: the relay has one desk key, so one desk. A relay with several desk
/// keys would scope by key, so that two desks' keys cannot collide.
pub const DESK_SCOPE: &str = "desk";

/// A key to claim in the transaction that does a request's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The key's scope, [`DESK_SCOPE`].
    pub scope: String,
    /// The desk's key.
    pub key: String,
    /// The route template, for the message when the key is reused on another request.
    pub route: String,
    /// The SHA-256, in hex, of what makes two requests the same (the method, the route
    /// template, the path parameters and the body), as the relay computed it.
    pub request_hash: String,
    /// How long the key is kept, in milliseconds.
    pub retention_ms: i64,
}

/// An answer saved with its key, given again, byte for byte, to a repeated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// What a claimed key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Earlier {
    /// The same request was done before: its answer.
    Same(Saved),
    /// The key was used for another request, on this route template.
    Other {
        /// The route template of the request that used the key first.
        route: String,
    },
}

/// What a request with a key got from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed<T> {
    /// The key was new (or had expired): the work was done and the answer saved with the key.
    Done(T),
    /// The key was already used; nothing was done.
    Earlier(Earlier),
}
