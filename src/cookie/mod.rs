//! SYN cookies: mint an ISN that encodes a handshake's state, and check the
//! ACK that echoes it (design notes, section 4.2).
//!
//! Owns the cookie secret, the time slots, the MSS tables and the bit layout.
//! Pure functions: it never reads a clock (time comes in as `now_secs`),
//! never touches the network, and never allocates in `mint`/`check`. The only
//! randomness is [`CookieSecret::generate`].
//!
//! The bit layout and the forgery odds are documented in [`layout`].

pub mod layout;
mod mac;
pub mod minter;
pub mod mss_table;
pub mod secret;
pub mod syn_options;
pub mod tuple;

pub use minter::{CookieError, CookieMinter, DecodedCookie, MintedCookie};
pub use secret::{CookieKeys, CookieSecret, SecretError};
pub use syn_options::SynOptions;
pub use tuple::CookieTuple;
